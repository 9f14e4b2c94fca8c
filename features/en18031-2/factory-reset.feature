Feature: A factory reset leaves nothing personal behind and no default way in
  A watch passed on to another child, sold or returned must forget the family that
  used it: their numbers, and the passwords they set. After the reset it must also be
  as safe as a new one.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:EN18031-2:DLM-1 @req:EN303645:5.11-1 @assess:functional-sufficiency
  Scenario: A factory reset erases the parents' numbers from the watch
    When the parent resets the watch to factory settings through the app
    And the wearer holds the SOS button for 3 seconds
    Then the watch calls neither the parent nor the second parent within 30 seconds

  @req:EN18031-1:GEC-8 @assess:functional-sufficiency
  Scenario: After a factory reset the universal default SMS password does not work
    When the parent resets the watch to factory settings through the app
    And a stranger texts "pw,123456,ts#" to the watch
    Then the watch sends no SMS within 60 seconds
