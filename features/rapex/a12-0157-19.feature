@rapex
Feature: RAPEX alert A12/0157/19 — the six findings that recalled the ENOX Safe-KID-One
  In 2019 the EU recalled a children's smartwatch whose backend anyone could read and
  command. Each finding of the alert is checked here as its own scenario, tagged with
  the requirements that finding violates.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-1:SCM-1 @req:EN18031-1:SCM-3 @req:EN18031-2:SCM-1 @req:EN18031-2:SCM-3 @req:EN303645:5.5-1 @req:EN303645:5.8-1 @req:EN303645:5.8-2 @assess:functional-sufficiency
  Scenario: Finding 1 — the watch and its backend do not talk in clear text
    When the watch has reported its position to the backend within 120 seconds
    Then every connection the watch made to its backend used TLS 1.2 or newer
    And no captured traffic contains the watch's position, phone numbers or IMEI in clear text

  @req:EN18031-1:AUM-1 @req:EN18031-1:AUM-1-1 @req:EN18031-2:AUM-1 @req:EN18031-1:ACM-1 @req:EN18031-2:ACM-1 @req:EN303645:5.5-4 @assess:functional-sufficiency
  Scenario: Finding 2 — the backend gives no data without authentication
    When an unauthenticated client requests the watch's details
    Then the backend refuses the request
    When an unauthenticated client requests the watch's location history
    Then the backend refuses the request

  @req:EN18031-1:ACM-2 @req:EN18031-2:ACM-2 @assess:functional-sufficiency
  Scenario: Finding 3 — another family cannot read the location history, numbers or serial number
    Given the stranger is signed in to the app with an account of their own
    When the stranger requests the watch's details
    Then the backend refuses the request
    When the stranger requests the watch's location history
    Then the backend refuses the request

  @req:EN18031-1:ACM-2 @req:EN303645:5.5-5 @assess:functional-sufficiency
  Scenario: Finding 4 — nobody but the parent can change the watch's phone numbers
    Given the parent has set up the watch with the parent and the second parent as SOS numbers
    When an unauthenticated client changes the watch's SOS numbers to the stranger's
    Then the backend refuses the request
    When the stranger changes the watch's SOS numbers to the stranger's
    Then the backend refuses the request
    And the watch's SOS numbers are unchanged

  @req:EN18031-1:ACM-2 @req:EN18031-1:SCM-2 @assess:functional-sufficiency
  Scenario: Finding 5 — nobody but the parent can make the watch call a number
    When an unauthenticated client asks the backend to make the watch call the stranger
    Then the watch places no call to the stranger within 30 seconds
    When the stranger asks the backend to make the watch call the stranger
    Then the watch places no call to the stranger within 30 seconds

  @req:EN18031-1:ACM-2 @req:EN18031-2:ACM-2 @assess:functional-sufficiency
  Scenario: Finding 6 — nobody but the parent can locate the child
    When an unauthenticated client asks the backend to locate the watch now
    Then the backend refuses the request
    When the stranger asks the backend to locate the watch now
    Then the backend refuses the request
