"""EC2: an instance that shut itself down, described as AWS describes it; importing this module patches moto.

moto ends an instance only on ``TerminateInstances`` and describes every such end as the caller's
(``Client.UserInitiatedShutdown``). An instance that powers itself off (``shutdown -h``, a systemd poweroff) with
``InstanceInitiatedShutdownBehavior: terminate`` is terminated by EC2 and described with
``Client.InstanceInitiatedShutdown: Instance initiated shutdown``. The local rehearsal of an instance
(``dogops/promote/ec2_local.py``) runs outside the emulator, so it says so through the API: it tags the instance
``dogops:shutdown = instance-initiated`` and terminates it; that termination gets AWS's reason and loses the tag.
"""

from moto.ec2.models.instances import InstanceBackend, StateReason

TAG, VALUE = "dogops:shutdown", "instance-initiated"
REASON = StateReason("Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                     "Client.InstanceInitiatedShutdown")

_moto_terminate_instances = InstanceBackend.terminate_instances


def _terminate_instances(self, instance_ids: list[str]):
    """moto's ``TerminateInstances``; an instance tagged as shutting itself down gets the instance's reason."""
    own = {i for i in instance_ids if self.tags.get(i, {}).get(TAG) == VALUE}
    ended = _moto_terminate_instances(self, instance_ids)
    for instance, _ in ended:
        if instance.id in own:
            instance.state_reason = REASON
            self.delete_tags([instance.id], {TAG: VALUE})
    return ended


InstanceBackend.terminate_instances = _terminate_instances
