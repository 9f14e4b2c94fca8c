Feature: The watch talks to its real backend only — attackers on the path learn nothing
  The rig stands where the cellular network stands. It can give the backend's name to
  an attacker's server, or sit in the middle with a forged certificate. A watch that
  checks who it is talking to sends such an attacker nothing; the ENOX Safe-KID-One
  sent everything in clear text to anyone on the path.

  Background:
    Given the watch is connected to its backend

  @req:EN18031-1:SCM-2 @req:EN18031-2:SCM-2 @req:EN303645:5.5-1 @assess:functional-sufficiency
  Scenario Outline: A man in the middle with a forged certificate reads nothing
    Given an attacker intercepts the watch's backend connection with a <certificate>
    When the network cuts the watch's connections
    Then the watch sends the attacker no application data within 60 seconds

    Examples:
      | certificate                              |
      | self-signed certificate                  |
      | certificate from an untrusted authority  |

  @req:EN18031-1:SCM-2 @req:EN18031-2:SCM-2 @assess:functional-sufficiency
  Scenario: An attacker's server that takes the backend's name learns nothing
    Given an attacker's server has taken the backend's name
    When the network cuts the watch's connections
    Then the watch sends the attacker no application data within 60 seconds

  @req:EN18031-1:SCM-1 @req:EN18031-1:SCM-3 @req:EN18031-2:SCM-1 @req:EN18031-2:SCM-3 @req:EN303645:5.8-1 @req:EN303645:5.8-2 @assess:functional-sufficiency
  Scenario: A voice message the child records leaves the watch only encrypted
    When the wearer holds the "call2" button for 5 seconds to record a voice message
    Then the watch sends nothing in clear text within 30 seconds
