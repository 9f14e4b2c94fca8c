@safety
Feature: Only the numbers the parents allow reach the child
  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:SAFETY:WL-1 @req:EN18031-2:ACM-3 @assess:functional-sufficiency
  Scenario: A stranger's call is rejected without ringing
    When a stranger calls the watch
    Then the watch rejects the call without ringing within 10 seconds

  @req:SAFETY:WL-2 @req:EN18031-2:ACM-3 @assess:functional-sufficiency
  Scenario: A stranger's SMS is not shown to the child
    When a stranger texts "Hi, I am a friend of your dad" to the watch
    Then the watch shows no message from the stranger within 20 seconds

  @req:EN18031-1:AUM-2 @req:EN18031-2:AUM-2 @req:EN18031-2:ACM-3 @assess:functional-sufficiency
  Scenario: A caller presenting the parent's number is not answered without the wearer
    When a caller presenting the parent's number calls the watch
    Then the watch does not answer the call within 20 seconds
