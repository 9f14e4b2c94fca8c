Feature: The backend believes only the watch, and shows each family only its own watches

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-1:SCM-2 @req:EN18031-2:SCM-2 @assess:functional-sufficiency
  Scenario: A forged position report does not reach the parent's map
    When an attacker on the internet sends the backend a position report for the watch at latitude 48.858370 longitude 2.294481
    Then the parent does not see the forged position within 10 seconds

  @req:EN18031-1:ACM-1 @req:EN18031-2:ACM-1 @assess:functional-sufficiency
  Scenario: Another family's account does not list the watch
    Given the stranger is signed in to the app with an account of their own
    When the stranger lists the watches on their own account
    Then the list does not include the watch
