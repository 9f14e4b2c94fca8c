Feature: The watch and its backend stay useful under load and after power loss
  A backend that answers every frame it gets, as fast as it comes, can be kept busy
  by anyone who holds one watch's credentials; while it is busy, a child's SOS
  waits. A watch whose supply fails must come back by itself, with the parents'
  numbers still in it.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:EN18031-1:RLM-1 @req:EN303645:5.9-1 @assess:functional-sufficiency
  Scenario: An SOS alarm gets through while the backend is flooded with heartbeats in the watch's name
    Given the backend is flooded with heartbeats in the watch's name by a client that never reads its answers
    When the wearer holds the SOS button for 3 seconds
    Then the backend receives an SOS alarm with the watch's position within 10 seconds

  @req:EN303645:5.9-2 @assess:functional-sufficiency
  Scenario: After a power loss the watch comes back online and its SOS numbers still work
    When the watch's power supply is cut for 20 seconds and restored
    Then the watch is back online at its backend within 60 seconds
    When the wearer holds the SOS button for 3 seconds
    Then the watch calls the parent within 30 seconds
