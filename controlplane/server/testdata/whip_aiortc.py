#!/usr/bin/env python3
"""A WHIP publisher (RFC 9725) on aiortc, a WebRTC stack that is not pion.

usage: whip_aiortc.py URL TOKEN SECONDS

POSTs a complete sendonly audio offer as application/sdp with the bearer
token, applies the 201's answer, sends audio for SECONDS, then DELETEs the
Location. Prints "status N", "location L", "sent N" (RTP packets) and
"delete N" lines for the Go test to read.
"""
import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack


def http(method, url, token, body=None, ctype=None):
    headers = {"Authorization": "Bearer " + token}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def main(url, token, seconds):
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    # aiortc gathers every candidate in setLocalDescription: a complete
    # offer, as Strait wants (no trickle).
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await loop.run_in_executor(
        None, http, "POST", url, token, pc.localDescription.sdp.encode(), "application/sdp")
    print("status", status, flush=True)
    if status != 201:
        print("body", body.decode(errors="replace"), flush=True)
        await pc.close()
        return 1
    location = urllib.parse.urljoin(url, headers["Location"])
    print("location", headers["Location"], flush=True)
    print("content-type", headers["Content-Type"], flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    await asyncio.sleep(seconds)
    sent = 0
    for s in (await pc.getStats()).values():
        if s.type == "outbound-rtp":
            sent += s.packetsSent
    print("sent", sent, flush=True)
    status, _, _ = await loop.run_in_executor(None, http, "DELETE", location, token)
    print("delete", status, flush=True)
    await pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
