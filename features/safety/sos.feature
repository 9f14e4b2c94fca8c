@safety
Feature: SOS — the alarm a child raises must reach the parents, every time
  Consumer tests of children's watches found SOS buttons that worked once and then
  needed a restart. These scenarios measure the alarm's latency and reliability.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:SAFETY:SOS-1 @assess:functional-sufficiency
  Scenario: An SOS press reaches the backend with the watch's position
    When the wearer holds the SOS button for 3 seconds
    Then the backend receives an SOS alarm with the watch's position within 10 seconds
    And the watch calls the parent within 30 seconds

  @req:SAFETY:SOS-3 @assess:functional-sufficiency
  Scenario: The watch calls the SOS numbers in turn until someone answers
    Given nobody answers the watch's calls
    When the wearer holds the SOS button for 3 seconds
    Then the watch calls the parent within 30 seconds
    And the watch calls the second parent within 90 seconds
    And the watch calls the second parent after the parent

  @req:SAFETY:SOS-2 @assess:functional-sufficiency
  Scenario: SOS works on every press, not only the first
    When the wearer holds the SOS button for 3 seconds, 3 times, 60 seconds apart
    Then the backend receives 3 SOS alarms within 30 seconds

  @req:SAFETY:SOS-1 @assess:functional-sufficiency
  Scenario: An SOS alarm gets through a slow, lossy network
    Given the network adds 800 ms of latency in each direction
    And the network loses 10 % of packets in each direction
    And the network carries at most 16 kbit/s in each direction
    When the wearer holds the SOS button for 3 seconds
    Then the backend receives an SOS alarm with the watch's position within 20 seconds
