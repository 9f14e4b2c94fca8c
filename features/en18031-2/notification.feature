Feature: The wearer notices when the watch listens
  Regulators banned children's watches whose "monitor" function let a caller listen in
  silently. A watch may offer a listening call only if the wearer can notice it.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-2:UNM-1 @req:SAFETY:MON-1 @assess:functional-sufficiency
  Scenario: A listening call is shown on the watch
    When the parent asks the backend for a listening call to the parent's number
    Then any call the watch opens to the parent within 30 seconds is shown to the wearer
