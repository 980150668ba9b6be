"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu writes a message file in place: open, lock, write. A consumer polling
the folder does not take the lock, so it can pick the file up while it is
still empty, fail to decode it, and stop the worker ("Unrecoverable error:
JSONDecodeError", kombu issue #1551). On a busy machine the gap is wide
enough to hit. Here the message is written under a name the consumer
ignores, then renamed into place, which is atomic within one folder.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # The consumer only takes names ending ".<queue>.msg".
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
