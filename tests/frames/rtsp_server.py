"""A real RTSP test server on 127.0.0.1: GStreamer's gst-rtsp-server serving an H.264 test pattern.

Runs under the Debian system python (/usr/bin/python3), because PyGObject and the GStreamer
introspection data come from Debian packages, not from the venv. Prints `READY <port>` on stdout once
it accepts connections and runs until SIGTERM/SIGINT.

    /usr/bin/python3 tests/frames/rtsp_server.py --port 0 --pattern ball
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def build_launch(pattern: str, width: int, height: int, fps: int) -> str:
    """Return the gst-launch description of the served media: a live test pattern encoded to H.264."""
    # is-live makes the source run at the nominal rate, like a camera; zerolatency and a short GOP let a
    # (re)connecting client decode within a second.
    return (
        f"( videotestsrc is-live=true pattern={pattern} "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def make_auth(user: str, password: str) -> GstRtspServer.RTSPAuth:
    """Return basic authentication that lets only this user see and play the media."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    return auth


def main() -> int:
    """Serve the stream until asked to stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--path", default="/stream", help="mount point")
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern; solid-color never changes")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--tcp-only", action="store_true", help="refuse RTP over UDP")
    parser.add_argument("--user", help="require basic authentication with this user")
    parser.add_argument("--password", default="", help="password of --user")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(build_launch(args.pattern, args.width, args.height, args.fps))
    factory.set_shared(True)
    if args.tcp_only:
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    if args.user:
        server.set_auth(make_auth(args.user, args.password))
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
    server.get_mount_points().add_factory(args.path, factory)

    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
