Feature: Firmware integrity and debug interfaces

  @req:EN18031-1:SUM-2 @req:EN303645:5.3-2 @req:EN303645:5.7-1 @assess:functional-sufficiency
  Scenario: A tampered firmware image does not run
    Given the watch is powered off
    When the rig flashes a copy of the firmware image with one payload byte changed
    Then the watch does not run the tampered image within 60 seconds of power-on

  @req:EN303645:5.6-4 @req:EN18031-1:SSM-2 @assess:functional-completeness
  Scenario: The debug port does not give away the flash
    Given the watch is booted
    Then a debug probe cannot read the watch's flash

  @req:EN303645:5.6-4 @req:EN18031-1:GEC-2 @assess:functional-completeness
  Scenario: The console offers no shell
    Given the watch is booted
    When the rig types "help" on the console
    Then the console offers no shell within 10 seconds

  @req:EN18031-1:SUM-2 @assess:functional-sufficiency
  Scenario: The vendor's own older firmware does not run again (anti-rollback)
    Given the watch is booted
    When the rig flashes the vendor's previous firmware image
    Then the watch does not run the previous image within 60 seconds of power-on
