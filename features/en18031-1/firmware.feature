Feature: Firmware integrity and debug interfaces

  @req:EN18031-1:SUM-2 @req:EN18031-2:SUM-2 @req:EN303645:5.3-2 @req:EN303645:5.7-1 @assess:functional-sufficiency
  Scenario: A tampered firmware image does not run
    Given the watch is powered off
    When the rig flashes a copy of the firmware image with one payload byte changed
    Then the watch does not run the tampered image within 60 seconds of power-on

  @req:EN303645:5.6-4 @req:EN18031-1:SSM-1 @req:EN18031-1:SSM-2 @req:EN18031-1:SSM-3 @req:EN18031-2:SSM-1 @req:EN18031-2:SSM-2 @req:EN18031-2:SSM-3 @req:EN18031-1:GEC-5 @assess:functional-completeness
  Scenario: The debug port does not give away the flash
    Given the watch is booted
    Then a debug probe cannot read the watch's flash

  @req:EN303645:5.6-4 @req:EN18031-1:GEC-2 @req:EN18031-1:GEC-5 @assess:functional-completeness
  Scenario: The console offers no shell
    Given the watch is booted
    When the rig types "help" on the console
    Then the console offers no shell within 10 seconds

  @req:EN18031-1:SUM-2 @req:EN18031-2:SUM-2 @assess:functional-sufficiency
  Scenario: The vendor's own older firmware does not run again (anti-rollback)
    Given the watch is booted
    When the rig flashes the vendor's previous firmware image
    Then the watch does not run the previous image within 60 seconds of power-on

  @req:EN18031-1:CCK-1 @req:EN18031-1:CCK-3 @req:EN303645:5.4-3 @assess:functional-completeness
  Scenario: The firmware image holds no hard-coded secret
    When the rig searches the device's firmware image for hard-coded secrets
    Then the image holds no private key and no password, key, secret, token or PIN with a literal value

  @req:EN18031-1:SUM-1 @req:EN18031-2:SUM-1 @assess:functional-completeness
  Scenario: A valid update pushed over the network installs
    Given the watch is connected to its backend
    When the backend pushes the vendor's valid update image to the watch
    Then the watch runs the update's version within 60 seconds

  @req:EN18031-1:SUM-2 @req:EN18031-2:SUM-2 @req:EN303645:5.3-10 @assess:functional-sufficiency
  Scenario Outline: An update pushed over the network that is <kind> is not installed
    Given the watch is connected to its backend
    When the backend pushes the vendor's <kind> update image to the watch
    Then the watch does not run the pushed image within 60 seconds

    Examples:
      | kind     |
      | unsigned |
      | tampered |
      | older    |
