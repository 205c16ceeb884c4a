"""Issue 19 item 7, what a newcomer met: misspelt names get a did-you-mean, REST connection
errors name their cause, the CLI's replay and publish say what they did and what went wrong."""
import pytest

import tcpulse


def test_a_misspelt_client_method_or_module_name_is_an_attribute_error_with_a_did_you_mean():
    queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    with pytest.raises(AttributeError, match=r"^'Queue' object has no attribute 'taks'\. Did you mean 'tasks?'\?$"):
        queue.taks  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'tcpulse' has no attribute 'QueueEvent'\. Did you mean 'QueueEvents'\?$"):
        tcpulse.QueueEvent  # noqa: B018
    with pytest.raises(AttributeError, match=r"no attribute 'Listner'\. Did you mean 'Listener'\?$"):
        tcpulse.Listner  # noqa: B018
    assert not hasattr(queue, "__deepcopy__") and not hasattr(tcpulse, "__wrapped__")
