Feature: The wearer notices when the watch listens
  Regulators banned children's watches whose "monitor" function let a caller listen in
  silently. A watch may offer a listening call only if the wearer can notice it, and a
  watch whose manufacturer declares no such function must not have one.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-2:UNM-1 @req:SAFETY:MON-1 @assess:functional-sufficiency
  Scenario: A listening call is shown on the watch
    Given the device declares the feature "monitor"
    When the parent asks the backend for a listening call to the parent's number
    Then any call the watch opens to the parent within 30 seconds is shown to the wearer

  @req:EN18031-1:GEC-2 @assess:functional-completeness
  Scenario: A listening function the manufacturer does not declare cannot be triggered
    Given the device does not declare the feature "monitor"
    When the parent asks the backend for a listening call to the parent's number
    Then the watch opens no call to the parent within 30 seconds
