"""The image's config, made the same for the same inputs: the part of an image Docker's classic builder stamps.

The layers are already the same from build to build: each layer's files come in one `COPY layers/<n>/ /`
(folders keep the context's fixed times) and each RUN ends with normalize-layer.sh (its times set to
SOURCE_DATE_EPOCH, its logs emptied). What is left is the config: the builder writes its clock into the image
and into every history entry, and the ID of the build container and of the parent image (stamped in turn).

`recommit` writes the config again from what the engine says of the image (its run settings, layers and
history), with every time of this build set to the inputs' time, and loads it: a tar of two small JSON files,
since the engine holds every layer already (`docker load` reads no layer it has). The image ID is the digest
of the config, so the same inputs give the same ID.
"""

from __future__ import annotations


from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import engine, record


class RecommitError(FleetbakeError):
    pass


def _history(api, image_id: str, base_id: str, created: str) -> list[dict]:
    """The image's history, oldest first: the base's entries as they are, this build's at `created`.

    Which entries made a layer is what the engine's history leaves out: each step's image (the classic
    builder keeps them, as its cache) says how many layers it has, so a step that added none is empty.
    """
    entries = list(reversed(api.history(image_id)))
    ids = [entry.get("Id") or "<missing>" for entry in entries]
    if base_id not in ids:
        raise RecommitError(f"{image_id[:19]}: its history does not reach its base {base_id[:19]}")
    split = ids.index(base_id) + 1
    base_layers = len(api.inspect_image(base_id)["RootFS"]["Layers"])
    base_entries = entries[:split]
    if len(base_entries) == base_layers:
        base_made = [True] * base_layers
    elif sum(1 for e in base_entries if e.get("Size")) == base_layers:
        base_made = [bool(e.get("Size")) for e in base_entries]
    else:
        raise RecommitError(f"base {base_id[:19]}: cannot tell which of its {len(base_entries)} history entries "
                            f"made its {base_layers} layers")
    out = [{"created": record.utc(int(e.get("Created") or 0)), "created_by": e.get("CreatedBy") or "",
            **({"comment": e["Comment"]} if e.get("Comment") else {}), **({} if made else {"empty_layer": True})}
           for e, made in zip(base_entries, base_made)]
    layers = base_layers
    for entry, ident in zip(entries[split:], ids[split:]):
        if ident == "<missing>":
            raise RecommitError(f"{image_id[:19]}: a build step's image is gone, so its layers cannot be told apart")
        count = len(api.inspect_image(ident)["RootFS"]["Layers"])
        out.append({"created": created, "created_by": entry.get("CreatedBy") or "",
                    **({"comment": entry["Comment"]} if entry.get("Comment") else {}),
                    **({} if count > layers else {"empty_layer": True})})
        layers = count
    return out


def config(image_id: str, base_id: str, created: str, labels: dict[str, str] | None = None) -> dict:
    """The image's config as the engine holds it, without the build's times, container and parent, with `labels`
    added: the build's own, set here since the classic builder gives each label passed to it a step and a commit."""
    api = engine.client().api
    attrs = api.inspect_image(image_id)
    run = dict(attrs["Config"] or {})
    run["Image"] = ""  # the parent step's image: its ID holds the build's clock
    if labels:
        run["Labels"] = {**(run.get("Labels") or {}), **labels}
    history = _history(api, image_id, base_id, created)
    diff_ids = list(attrs["RootFS"]["Layers"])
    if sum(1 for h in history if not h.get("empty_layer")) != len(diff_ids):
        raise RecommitError(f"{image_id[:19]}: its history names {len(history)} steps that do not add up to its "
                            f"{len(diff_ids)} layers")
    document = {"architecture": attrs["Architecture"], "os": attrs["Os"], "config": run, "created": created,
                "history": history, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    for key, field in (("variant", "Variant"), ("os.version", "OsVersion"), ("author", "Author")):
        if attrs.get(field):
            document[key] = attrs[field]
    return document


def recommit(image_id: str, base_id: str, epoch: int, tags: list[str], labels: dict[str, str] | None = None) -> str:
    """Load the image again with its config at the inputs' time and `labels`, under `tags`; return the new image ID."""
    document = config(image_id, base_id, record.utc(epoch), labels)
    try:  # the engine has every layer already
        return engine.load_config(document, tags, [None] * len(document["rootfs"]["diff_ids"]),
                                  f"{image_id[:19]}: its config")
    except engine.EngineError as exc:
        raise RecommitError(str(exc)) from None
