Feature: Deleting an account deletes what it could see
  A parent who deletes their account must leave nothing behind that the account could
  still reach: no sign-in, no token that still reads the child's whereabouts.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-2:DLM-1 @req:EN303645:5.11-2 @assess:functional-sufficiency
  Scenario: A deleted account can no longer sign in nor read the watch's data
    Given a new account of its own on the backend
    And that account has paired the watch with the pairing code from the watch's box
    And that account sees the watch's location history within 60 seconds
    When that account deletes itself
    Then signing in as that account is refused
    And the token that account held gets no more from the backend than a token it never issued
