Feature: SMS commands — no universal default password, no answers to strangers, no replays
  Many children's watches take configuration commands by SMS, protected by a default
  password (123456) printed in every manual. Defaults are what a watch has in its
  factory state, so those checks start with a factory reset. A command the parents send is only as safe
  as its password, its sender check and its protection against being sent again by
  whoever recorded it; and a command the manufacturer does not declare must do nothing.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:EN18031-1:AUM-5 @req:EN18031-1:AUM-5-1 @req:EN18031-2:AUM-5 @req:EN303645:5.1-1 @req:EN18031-1:GEC-7 @req:EN303645:5.6-2 @req:EN18031-1:GEC-8 @assess:functional-sufficiency
  Scenario: The default SMS password does not work, also right after a factory reset
    When the parent resets the watch to factory settings through the app
    And a stranger texts "pw,123456,ts#" to the watch
    Then the watch sends no SMS within 60 seconds

  @req:EN18031-1:AUM-5-1 @req:EN18031-2:AUM-5 @assess:functional-sufficiency
  Scenario: Other default passwords seen in the field do not work either
    When the parent resets the watch to factory settings through the app
    And a stranger texts "pw,523681,ts#" to the watch
    Then the watch sends no SMS within 60 seconds

  @req:EN18031-1:SCM-4 @req:EN18031-2:SCM-4 @assess:functional-sufficiency
  Scenario: A parent's SMS command sent again by someone who recorded it is not obeyed
    Given the parent has set a new SMS command password through the app
    When the parent texts the SMS command "ts"
    And the watch has answered the parent by SMS within 60 seconds
    And the network delivers the last SMS to the watch again
    Then the watch sends no SMS within 60 seconds

  @req:EN18031-1:AUM-4 @req:EN18031-2:AUM-4 @assess:functional-sufficiency
  Scenario: Once the parent changes the SMS password, the old one stops working
    Given the parent has set a new SMS command password through the app
    When the parent sets another SMS command password through the app
    And the parent texts the SMS command "ts" with the previous password
    Then the watch sends no SMS within 60 seconds
    When the parent texts the SMS command "ts"
    Then the watch answers the parent by SMS within 60 seconds

  @req:EN18031-1:GEC-2 @req:EN18031-1:ACM-2 @assess:functional-completeness
  Scenario: A listening command the manufacturer does not declare does nothing by SMS
    Given the device does not declare the SMS command "monitor"
    And the parent has set a new SMS command password through the app
    When the parent texts the SMS command "monitor,{parent}"
    Then the watch opens no call to the parent within 30 seconds

  @req:EN18031-1:GEC-2 @assess:functional-completeness
  Scenario: A listening command found in field firmware does nothing when a stranger texts it
    When a stranger texts "*wiretap*{stranger}" to the watch
    Then the watch places no call to the stranger within 30 seconds

  @req:EN18031-1:SCM-2 @req:EN18031-1:ACM-2 @assess:functional-sufficiency
  Scenario: Neither an SMS nor the backend moves the watch to another server
    Given the parent has set a new SMS command password through the app
    When the parent texts the SMS command to use the server "relay.attacker.example" port 5093
    Then the watch opens no connection to "relay.attacker.example" within 60 seconds
    When the parent asks the backend to move the watch to the server "relay.attacker.example" port 5093
    Then the watch opens no connection to "relay.attacker.example" within 60 seconds
