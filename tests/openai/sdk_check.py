"""The official OpenAI Python SDK against a genfleet cluster, unchanged but
for base_url and api_key (GENFLEET_API_BASE, GENFLEET_API_KEY). Prints one
JSON object with what it saw; tests/suite/openai_api.rs checks it, and the files
it downloaded into OUT_DIR."""

import json
import os
import sys

import openai
from openai import OpenAI

base = os.environ["GENFLEET_API_BASE"]
key = os.environ["GENFLEET_API_KEY"]
other_key = os.environ["GENFLEET_OTHER_KEY"]
out_dir = sys.argv[1]
client = OpenAI(base_url=base, api_key=key, max_retries=0)
seen = {"sdk": openai.__version__}

# create_and_poll: created, polled (honouring openai-poll-after-ms), done.
video = client.videos.create_and_poll(
    prompt="a red kite over a grey sea",
    model="tiny",
    seconds="1",
    size="64x48",
    extra_body={"steps": 4, "seed": 7},
    poll_interval_ms=200,
)
seen["created"] = {
    "id": video.id,
    "status": video.status,
    "progress": video.progress,
    "seconds": video.seconds,
    "size": video.size,
    "model": video.model,
    "completed_at": video.completed_at,
}

# Every variant downloads to a file.
for variant in ["video", "thumbnail", "spritesheet"]:
    content = client.videos.download_content(video.id, variant=variant)
    path = os.path.join(out_dir, variant + (".mp4" if variant == "video" else ".png"))
    content.write_to_file(path)
    seen[variant] = path

# More videos than one page, listed page by page.
ids = {video.id}
for i in range(4):
    ids.add(
        client.videos.create(
            prompt=f"a paper boat {i}", model="tiny", seconds="1", size="64x48",
            extra_body={"steps": 2, "qos": "batch"},
        ).id
    )
first = client.videos.list(limit=2, order="asc")
listed = [v.id for v in first]  # iterating a page fetches the next ones
seen["pages"] = sum(1 for _ in client.videos.list(limit=2, order="asc").iter_pages())
seen["listed"] = listed
seen["listed_all"] = ids <= set(listed) and len(listed) == len(set(listed))
seen["first_page"] = len(first.data)

# Bad requests raise BadRequestError, naming what was wrong.
bad = {}
for name, kwargs in {
    "size": {"size": "250x256"},
    "model": {"model": "sora-2"},
    "seconds": {"seconds": "60", "size": "1280x720"},
}.items():
    try:
        client.videos.create(prompt="x", **{"model": "tiny", **kwargs})
        bad[name] = "accepted"
    except openai.BadRequestError as e:
        bad[name] = {"status": e.status_code, "param": e.body.get("param") if isinstance(e.body, dict) else None, "message": str(e)}
seen["bad"] = bad

# Another tenant's key sees nothing of these videos.
other = OpenAI(base_url=base, api_key=other_key, max_retries=0)
try:
    other.videos.retrieve(video.id)
    seen["other_tenant"] = "visible"
except openai.NotFoundError:
    seen["other_tenant"] = "not found"
seen["other_list"] = [v.id for v in other.videos.list().data]

# A wrong key: AuthenticationError.
try:
    OpenAI(base_url=base, api_key="gf_nope_nope", max_retries=0).videos.list()
    seen["wrong_key"] = "accepted"
except openai.AuthenticationError:
    seen["wrong_key"] = "refused"

# A remix: the same settings (and seed) with a new prompt; another tenant
# cannot remix what it cannot see.
remix = client.videos.remix(video.id, prompt="a red kite over a calm sea")
remix = client.videos.poll(remix.id, poll_interval_ms=200)
seen["remix"] = {
    "status": remix.status,
    "remixed_from": remix.remixed_from_video_id,
    "prompt": remix.prompt,
    "size": remix.size,
    "seconds": remix.seconds,
}
try:
    other.videos.remix(video.id, prompt="mine now")
    seen["other_remix"] = "accepted"
except openai.NotFoundError:
    seen["other_remix"] = "not found"

# Delete, then it is gone.
deleted = client.videos.delete(video.id)
seen["deleted"] = deleted.deleted
try:
    client.videos.retrieve(video.id)
    seen["after_delete"] = "still there"
except openai.NotFoundError:
    seen["after_delete"] = "not found"

print(json.dumps(seen))
