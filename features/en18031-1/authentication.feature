Feature: The backend's authenticators are real

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-1:AUM-3 @assess:functional-sufficiency
  Scenario: A token the backend never issued is refused
    When a client presenting a made-up token requests the watch's location history
    Then the backend refuses the request

  @req:EN18031-1:AUM-5 @req:EN18031-1:AUM-5-2 @assess:functional-sufficiency
  Scenario: A trivial password is refused at registration
    When someone registers an account with the password "qwe"
    Then the backend refuses the request
