"""FusionDesk action server: knowledge-base answers, banking forms and human handoff.

`rasa run actions` imports this package; every concrete `Action` subclass found in its
modules is registered once (rasa_sdk instantiates actions as singletons).
"""

from actions.answers import ActionAnswerQuestion
from actions.fallback import ActionOutOfScope
from actions.forms import (
    ActionAskConfirmed,
    ActionStopForm,
    ActionSubmitBlockCardForm,
    ActionSubmitDisputeChargeForm,
    ActionSubmitTopUpForm,
    ActionSubmitTransferMoneyForm,
    ValidateBlockCardForm,
    ValidateDisputeChargeForm,
    ValidateTopUpForm,
    ValidateTransferMoneyForm,
)
from actions.handoff import ActionFormAbandoned, ActionHandoff

__all__ = [
    "ActionAnswerQuestion",
    "ActionAskConfirmed",
    "ActionFormAbandoned",
    "ActionHandoff",
    "ActionOutOfScope",
    "ActionStopForm",
    "ActionSubmitBlockCardForm",
    "ActionSubmitDisputeChargeForm",
    "ActionSubmitTopUpForm",
    "ActionSubmitTransferMoneyForm",
    "ValidateBlockCardForm",
    "ValidateDisputeChargeForm",
    "ValidateTopUpForm",
    "ValidateTransferMoneyForm",
]
