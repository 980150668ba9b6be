"""The embedded broker: kombu's filesystem transport, with each message written atomically.

kombu writes a message file in place, while a consumer polling the same
folder moves and reads any ``*.msg`` it finds: it can read the file before
the bytes are in, gets an empty payload, and the worker stops with a
JSONDecodeError ("Unrecoverable error"). Here the message is written under a
name the consumer ignores and renamed when complete; a rename within one
filesystem is atomic, so a consumer only ever sees whole messages.
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
        # "<name>.msg.part" does not end in ".<queue>.msg": consumers skip it.
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
