Feature: The watch protects its connections with current cryptography
  The rig reads the handshakes on the watch's data path: what the watch offers in its
  ClientHello and what it agrees with its backend in the server's hello. Old protocol
  versions, suites without forward secrecy or without authenticated encryption, and
  offers of broken suites a downgrade could reach all fall short of best practice.

  Background:
    Given the watch is connected to its backend

  @req:EN18031-1:CRY-1 @req:EN18031-2:CRY-1 @req:EN303645:5.5-1 @assess:functional-sufficiency
  Scenario: Connections to the declared services use TLS 1.2 or newer with forward-secret AEAD suites only
    When the rig watches the watch's traffic for 10 seconds
    Then every connection the watch made to its declared services negotiated TLS 1.2 or newer with a forward-secret AEAD cipher suite
    And no connection the watch made to its declared services offered a weak cipher suite
