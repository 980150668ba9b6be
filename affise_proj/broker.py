"""The embedded default's broker: kombu's filesystem transport with atomic writes.

kombu's filesystem ``_put`` creates the message file, then locks and writes
it, while ``_get`` moves files without taking the lock: a worker can pick up
a message before it is written, fail to decode it and stop ("Unrecoverable
error: JSONDecodeError"). Writing to a name the reader ignores and renaming
it into place makes every message appear whole.

``_put`` is a private method of kombu's channel: the one place the write
happens, and no setting changes it. Upstream the symptom is celery/kombu#1551
(open); tests/test_broker_restart.py and the embedded-default suite run
through this transport.
"""

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"  # not "<queue>.msg": readers skip it
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
