Feature: SMS commands — no universal default password, no answers to strangers
  Many children's watches take configuration commands by SMS, protected by a default
  password (123456) printed in every manual.

  Background:
    Given the watch is connected to its backend

  @req:EN18031-1:AUM-5 @req:EN18031-1:AUM-5-1 @req:EN303645:5.1-1 @assess:functional-sufficiency
  Scenario: The default SMS password does not work
    When a stranger texts "pw,123456,ts#" to the watch
    Then the watch sends no SMS within 60 seconds

  @req:EN18031-1:AUM-5-1 @assess:functional-sufficiency
  Scenario: Other default passwords seen in the field do not work either
    When a stranger texts "pw,523681,ts#" to the watch
    Then the watch sends no SMS within 60 seconds
