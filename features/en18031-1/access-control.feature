Feature: Only the watch's own family may change it, pair it or read it
  The backend decides who may act on a watch from the account that signed in, never
  from what a request claims: not the absence of a sign-in, not a user id in place of
  the pairing code, not a role asked for at sign-in.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app

  @req:EN18031-1:ACM-2 @req:EN18031-2:ACM-2 @req:EN303645:5.5-5 @assess:functional-sufficiency
  Scenario: Nobody but the parent can move the safe zones
    Given the parent sets a safe zone of 50 metres around "school"
    And the stranger is signed in to the app with an account of their own
    When an unauthenticated client replaces the watch's safe zones with one around "far-away"
    Then the backend refuses the request
    When the stranger replaces the watch's safe zones with one around "far-away"
    Then the backend refuses the request
    And the parent still sees the safe zones they had set

  @req:EN18031-1:ACM-2 @req:EN18031-2:ACM-2 @assess:functional-sufficiency
  Scenario: A watch cannot be paired without the code from its box
    Given a new account of its own on the backend
    And what that account sees of the watch is noted
    When that account asks to pair the watch by its IMEI with its own user id instead of the pairing code
    Then the backend refuses the request
    When that account asks to pair the watch by its IMEI with a wrong pairing code
    Then the backend refuses the request
    And that account sees no more of the watch than before

  @req:EN18031-1:ACM-2 @req:EN18031-2:ACM-2 @assess:functional-sufficiency
  Scenario: Asking for the administrator role gives an account no other family's watch
    Given what a new account of no family sees of the watch is noted
    And a new account of its own on the backend registered asking for the administrator role
    When that account signs in asking for the administrator role
    Then the backend did not make that account an administrator
    And that account sees no more of the watch than a new account of no family
