Feature: The backend's authenticators are real

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-1:AUM-3 @req:EN18031-2:AUM-3 @assess:functional-sufficiency
  Scenario: A token the backend never issued is refused
    When a client presenting a made-up token requests the watch's location history
    Then the backend refuses the request

  @req:EN18031-1:AUM-5 @req:EN18031-1:AUM-5-2 @req:EN18031-2:AUM-5 @assess:functional-sufficiency
  Scenario: A trivial password is refused at registration
    When someone registers an account with the password "qwe"
    Then the backend refuses the request

  @req:EN18031-1:AUM-6 @req:EN18031-2:AUM-6 @req:EN303645:5.1-5 @assess:functional-sufficiency
  Scenario: Password guessing is stopped after a few wrong passwords, for a while
    Given a new account of its own on the backend
    When someone tries 20 wrong passwords on that account
    Then the backend stops checking passwords after at most 10 wrong ones
    And that account can sign in with its password again within 180 seconds
