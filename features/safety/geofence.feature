@safety
Feature: Geofence — parents are told at once when the child leaves a safe zone
  Consumer tests found watches that only told the parents at the next routine
  position report, minutes after the child had left. The rig walks the watch out of a
  safe zone along a route and measures the alert's latency from the first GNSS epoch
  it fed outside the zone.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:SAFETY:GEO-1 @assess:functional-sufficiency
  Scenario: Leaving the school's safe zone alerts the parent within seconds
    Given the watch is at "school"
    And the parent sets a safe zone of 50 metres around "school"
    When the watch sends its next position report within 90 seconds
    And the watch follows the route "leaves-school-zone" at 15 km/h
    Then the parent receives a geofence alert within 20 seconds of the watch leaving the safe zone
