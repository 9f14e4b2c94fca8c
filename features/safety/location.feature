@safety
Feature: Location — the position parents see is where the child is
  The rig feeds the watch's GNSS receiver (still, along routes, without reception,
  spoofed, with shifted satellite time, or a real receiver's recorded output) and
  compares what the parent's app shows with what it fed, epoch by epoch.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent sets the watch to report its position every 10 seconds

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario: The backend shows the watch at a named place
    Given the watch is at "park"
    Then the backend shows the watch within 30 metres of that position within 30 seconds

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario: Positions reported on the way lie on the route
    When the watch follows the route "leaves-school-zone" at 10 km/h
    And the watch has reached the end of the route
    Then the backend received at least 15 positions during the route, each within 25 metres of where the watch was

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario Outline: Without reception the watch does not pass off its last position as current
    When <obstruction> for 60 seconds
    Then no position the backend receives in the next 50 seconds is marked as a current fix
    And the backend receives a current position within 30 seconds after reception returns

    Examples:
      | obstruction                                 |
      | the watch is indoors without GNSS reception |
      | the GNSS signal is jammed                   |

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario: When the receiver's position jumps, the backend follows it
    When the GNSS position jumps to "far-away"
    Then the backend shows the watch within 30 metres of that position within 30 seconds

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario: Report times follow the satellites' UTC across midnight
    When the GNSS time is set to 20 seconds before midnight UTC
    Then the positions the backend receives in the next 60 seconds carry the GNSS date and time within 3 seconds

  @req:SAFETY:LOC-1 @assess:functional-sufficiency
  Scenario: A real receiver's recorded output is understood
    When the GNSS receiver replays the recording "bu353s4.log"
    Then the backend shows the watch within 30 metres of that position within 40 seconds

  @req:SAFETY:BKF-1 @assess:functional-sufficiency
  Scenario: Positions taken without coverage reach the parents when it returns
    When the watch loses cellular coverage for 5 minutes
    Then the positions taken while out of coverage reach the backend within 120 seconds
