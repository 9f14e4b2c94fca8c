Feature: A factory reset leaves nothing personal behind
  A watch passed on to another child, sold or returned must forget the family that
  used it. (That a reset watch is as safe as a new one — no default SMS password — is
  checked in en18031-1/sms-commands.feature.)

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:EN18031-2:DLM-1 @req:EN303645:5.11-1 @assess:functional-sufficiency
  Scenario: A factory reset erases the parents' numbers from the watch
    When the parent resets the watch to factory settings through the app
    And the wearer holds the SOS button for 3 seconds
    Then the watch calls neither the parent nor the second parent within 30 seconds
