Feature: The watch talks only to the services its manufacturer declares
  Watches have been found sending their phonebook, positions or recordings to hosts
  no parent was told about. The rig resolves every name the watch asks for and sees
  every connection it opens, so it can hold the watch's traffic against the
  manufacturer's declaration.

  @req:EN18031-1:GEC-4 @req:EN303645:5.6-1 @req:EN303645:6-4 @assess:functional-completeness
  Scenario: Every connection and name lookup goes to a declared service
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers
    When the rig watches the watch's traffic for 20 seconds
    Then every connection and DNS lookup the watch made since power-on went to a service the manufacturer declares
