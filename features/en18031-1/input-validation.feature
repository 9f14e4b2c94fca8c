Feature: Malformed input does not upset the watch
  Whatever arrives by SMS — the longest text, modem commands and unsolicited result
  codes, format strings, broken commands — the watch must neither restart nor change its
  settings, and its safety functions must keep working.

  Background:
    Given the watch is connected to its backend
    And the parent is signed in to the app
    And the parent has set up the watch with the parent and the second parent as SOS numbers

  @req:EN18031-1:GEC-6 @req:EN303645:5.13-1 @assess:functional-sufficiency
  Scenario: Malformed SMS from strangers and broken commands from the parent change nothing
    Given the parent has set a new SMS command password through the app
    When a stranger texts each of these messages to the watch:
      | {160*A}                                  |
      | pw,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,#  |
      | %s%s%s%n%x%x%x                           |
      | pw,123456,center,{stranger};ATD{stranger};# |
      | AT+CFUN=0;ATD{stranger};                  |
      | +CMT: "{stranger}",,"26/01/01,00:00:00+00" |
      | RING                                      |
      | *#06#                                     |
    And the parent texts each of these SMS commands:
      | center,{stranger};ATD{stranger};           |
      | sos1,+49{40*9}                            |
      | upload,-1                                 |
      | upload,99999999999999999999999             |
      | ip,,0                                     |
      | {120*,}                                   |
    And the wearer holds the SOS button for 3 seconds
    Then the backend receives an SOS alarm with the watch's position within 20 seconds
    And the watch calls the parent within 30 seconds
    And the watch places no call to the stranger within 30 seconds
    And the watch has not restarted since the scenario began
