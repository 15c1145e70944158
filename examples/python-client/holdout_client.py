#!/usr/bin/env python3
"""A minimal platform client for Holdout.

Generates its gRPC stubs from the project's proto with grpcio-tools (into a cache folder next
to this file), submits a folder of participant code to an existing challenge, follows it to
the end, and prints the released score and the public leaderboard.

    pip install grpcio grpcio-tools
    python3 holdout_client.py --addr 127.0.0.1:50051 --token "$HOLDOUT_TOKEN" \
        --challenge digits --participant alice path/to/solution/
"""

import argparse
import hashlib
import importlib
import io
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
GEN_DIR = os.path.join(HERE, "_generated")


def load_stubs():
    """Compiles holdout.proto with grpcio-tools once, then imports the generated modules."""
    proto = os.path.join(PROTO_ROOT, "holdout", "v1", "holdout.proto")
    target = os.path.join(GEN_DIR, "holdout", "v1", "holdout_pb2.py")
    if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(proto):
        from grpc_tools import protoc
        import grpc_tools

        os.makedirs(GEN_DIR, exist_ok=True)
        includes = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        code = protoc.main([
            "protoc", f"-I{PROTO_ROOT}", f"-I{includes}",
            f"--python_out={GEN_DIR}", f"--grpc_python_out={GEN_DIR}", proto,
        ])
        if code != 0:
            sys.exit(f"holdout_client: protoc failed with code {code}")
    sys.path.insert(0, GEN_DIR)
    pb2 = importlib.import_module("holdout.v1.holdout_pb2")
    pb2_grpc = importlib.import_module("holdout.v1.holdout_pb2_grpc")
    return pb2, pb2_grpc


def pack(folder):
    """Packs a folder as tar.gz in memory (regular files only, paths relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                tar.add(path, arcname=os.path.relpath(path, folder), recursive=False)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--addr", default=os.environ.get("HOLDOUT_ADDR", "127.0.0.1:50051"))
    ap.add_argument("--token", default=os.environ.get("HOLDOUT_TOKEN"))
    ap.add_argument("--challenge", required=True)
    ap.add_argument("--participant", required=True)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if not args.token:
        sys.exit("holdout_client: a token is needed (--token or HOLDOUT_TOKEN)")

    import grpc

    pb2, pb2_grpc = load_stubs()
    addr = args.addr.split("://", 1)[-1]
    channel = grpc.insecure_channel(addr)
    auth = [("authorization", f"Bearer {args.token}")]
    submissions = pb2_grpc.SubmissionsStub(channel)
    leaderboards = pb2_grpc.LeaderboardsStub(channel)

    archive = pack(args.folder)
    kind = pb2.SUBMISSION_KIND_SMOKE if args.smoke else pb2.SUBMISSION_KIND_FULL

    def requests():
        yield pb2.SubmitRequest(metadata=pb2.SubmitMetadata(
            challenge_id=args.challenge, participant_id=args.participant, kind=kind,
            format=pb2.ARCHIVE_FORMAT_TAR_GZ, sha256=hashlib.sha256(archive).hexdigest()))
        for i in range(0, len(archive), 1 << 20):
            yield pb2.SubmitRequest(chunk=archive[i:i + (1 << 20)])

    try:
        sub = submissions.Submit(requests(), metadata=auth)
        print(f"submitted {sub.id} ({pb2.SubmissionState.Name(sub.state)})")
        last = sub
        for update in submissions.WatchSubmission(pb2.WatchSubmissionRequest(id=sub.id), metadata=auth):
            print(f"  {pb2.SubmissionState.Name(update.state)} {pb2.Verdict.Name(update.verdict)}")
            last = update
        print(f"verdict: {pb2.Verdict.Name(last.verdict)}")
        if last.message:
            print(f"message: {last.message}")
        for metric, value in sorted(last.scores.items()):
            print(f"score {metric} = {value}")
        board = leaderboards.GetLeaderboard(
            pb2.GetLeaderboardRequest(challenge_id=args.challenge, view=pb2.LEADERBOARD_VIEW_PUBLIC), metadata=auth)
        print(f"leaderboard ({board.metric}):")
        for e in board.entries:
            print(f"  {e.rank}. {e.participant_id} {e.score}")
    except grpc.RpcError as e:
        sys.exit(f"holdout_client: {e.code().name}: {e.details()}")
    return 0 if last.state == pb2.SUBMISSION_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
