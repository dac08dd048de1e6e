"""`tagger models`: list, show, activate, roll back and prune model versions."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.argtypes import int_between
from tagger.cli.shared import open_sessions, print_json
from tagger.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, activate, roll back or prune model versions")
    msub = p.add_subparsers(dest="models_command", required=True)
    m = msub.add_parser("list", help="all versions, newest first, metrics side by side")
    m.add_argument("--json", action="store_true", help="print JSON")
    m = msub.add_parser("show", help="one version: metrics per tag, thresholds, training arguments and data")
    m.add_argument("version", nargs="?", help="default: the active version")
    m.add_argument("--json", action="store_true", help="print JSON")
    m = msub.add_parser("activate", help="validate VERSION, make it active; running workers switch between batches")
    m.add_argument("version")
    msub.add_parser("rollback", help="re-activate the version that was active before the current one")
    m = msub.add_parser(
        "prune",
        help="delete the suggestions of versions older than the last few that served (kept for a rollback)",
        description="Keeps the active version and the --keep versions activated most recently before it (a rollback "
        "to them is instant); deletes the suggestions of every older version that served, a few thousand rows per "
        "transaction, while workers run. A pruned version keeps its row (metrics, training record, artifact) marked "
        "`pruned` and can never be activated again. A version that some images still have their newest tags from "
        "is kept back until they are re-tagged (`tagger tag --stale`), unless --force (they become untagged).",
    )
    m.add_argument(
        "--keep",
        type=int_between(0),
        default=None,
        metavar="N",
        help="versions kept besides the active one (default TAGGER_MODELS_KEEP)",
    )
    m.add_argument("--dry-run", action="store_true", help="say what would be deleted and kept; delete nothing")
    m.add_argument("--force", action="store_true", help="also prune versions images still have their newest tags from")
    m.add_argument(
        "--batch", type=int_between(1, 100_000), default=5000, help="rows deleted per transaction (default 5000)"
    )
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from tagger import promotion, registry

    sessions = open_sessions(settings, migrate=args.models_command in ("activate", "rollback", "prune"))
    if args.models_command == "prune":
        return _prune(args, settings, sessions)
    if args.models_command == "activate":
        switch = promotion.activate(sessions, args.version, broker_url=settings.broker_url)
        if switch.previous == switch.active:
            print(f"{switch.active} is already the active version; nothing changed")
            return 0
        print(
            f"activated {switch.active} (was {switch.previous or 'none'}); "
            f"{switch.listeners} worker process(es) notified, the others switch within seconds"
        )
        return 0
    if args.models_command == "rollback":
        switch = promotion.rollback(sessions, broker_url=settings.broker_url)
        print(f"rolled back from {switch.previous} to {switch.active}; {switch.listeners} worker process(es) notified")
        return 0
    if args.models_command == "show":
        with sessions() as session:
            row = registry.get(session, args.version) if args.version else registry.active(session)
            data = _model_row(row) | {"uri": row.uri, "sha256": row.sha256, "error": row.error, "meta": row.meta}
        if args.json:
            print_json(data)
        else:
            _print_model(data)
        return 0
    with sessions() as session:
        rows = [_model_row(r) for r in registry.list_versions(session)]
    if args.json:
        print_json(rows)
        return 0
    print(f"{'version':<24} {'arch':<10} {'status':<11} {'F2@0.2':>7} {'F2 cal':>7} {'mAP':>6} {'valid':>6}  created")
    for r in rows:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else "-" for k in ("f2", "f2_calibrated", "map")]
        print(
            f"{r['version']:<24} {r['arch']:<10} {r['status']:<11} {cells[0]:>7} {cells[1]:>7} {cells[2]:>6} "
            f"{r['valid_images'] or '-':>6}  {r['created_at']}"
        )
    return 0


def _prune(args: argparse.Namespace, settings: Settings, sessions: Any) -> int:
    """`models prune`: what is kept and what goes (with --dry-run, only said), a progress bar on a terminal."""
    from tqdm import tqdm

    from tagger import promotion

    keep = settings.models_keep if args.keep is None else args.keep
    kept, prunable = promotion.pruning(sessions, keep)
    print(f"kept: {', '.join(kept) or 'none'} (the active version and {keep} more)")
    deleted = 0
    for version in prunable:
        rows, images = promotion.held(sessions, version)
        if images and not args.force:
            print(
                f"{version}: kept back: {images:,} image(s) still have their newest tags from it; re-tag them "
                "(`tagger tag --stale`) or prune with --force (they become untagged)"
            )
            continue
        if args.dry_run:
            untagged = f"; {images:,} image(s) would become untagged" if images else ""
            print(f"{version}: would delete {rows:,} suggestions{untagged}")
            continue
        with tqdm(total=rows, unit="row", desc=f"prune {version}", disable=None) as bar:
            n = promotion.prune(sessions, version, force=args.force, batch=args.batch, progress=bar.update)
        deleted += n
        print(f"{version}: pruned, {n:,} suggestions deleted")
    if not prunable:
        print("nothing to prune")
    elif not args.dry_run:
        print(f"{deleted:,} suggestions deleted in all")
    return 0


def _model_row(r: Any) -> dict[str, Any]:
    metrics, training = (r.meta or {}).get("metrics") or {}, (r.meta or {}).get("training") or {}
    return {
        "version": r.version,
        "arch": r.arch,
        "status": r.status,
        "active": r.is_active,
        "f2": metrics.get("f2"),
        "f2_calibrated": metrics.get("f2_calibrated"),
        "map": metrics.get("map"),
        "valid_images": training.get("valid_images"),
        "tags": len(r.tags),
        "created_at": r.created_at.isoformat(timespec="seconds"),
        "activated_at": r.activated_at.isoformat(timespec="seconds") if r.activated_at else None,
        "pruned_at": r.pruned_at.isoformat(timespec="seconds") if r.pruned_at else None,
    }


def _print_model(data: dict[str, Any]) -> None:
    meta = data["meta"] or {}
    metrics, training = meta.get("metrics") or {}, meta.get("training") or {}
    print(f"version   {data['version']} ({data['arch']}, {data['status']})")
    print(f"artifact  {data['uri']}  sha256 {data['sha256'][:16]}...")
    if data["error"]:
        print(f"refused   {data['error']}")
    if data["pruned_at"]:
        print(f"pruned    {data['pruned_at']}: its suggestions were deleted; it cannot be activated again")
    for name in ("f2", "f2_calibrated", "map", "accuracy", "valid_loss"):
        if isinstance(metrics.get(name), float):
            print(f"{name:<14} {metrics[name]:.4f}")
    calibration = metrics.get("calibration")
    if isinstance(calibration, dict):
        kept = calibration.get("per_tag_kept") or {}
        print(
            f"thresholds     {calibration.get('chosen')}: global {calibration.get('threshold')} "
            f"(cross-fitted F2 {calibration.get('f2_global')}), per-tag kept for {len(kept)} tag(s) "
            f"(served policy {calibration.get('f2_served')}, "
            f"every tag per-tag {calibration.get('f2_per_tag_every_tag')})"
        )
    if not training:
        print("training  no record: registered without `tagger train` (an imported or benchmark artifact)")
    else:
        print(
            f"data      {training.get('rows')} rows, {training.get('train_images')} train / "
            f"{training.get('valid_images')} held out, sha256 {str(training.get('data_sha256'))[:16]}..."
        )
        print(
            f"training  init {training.get('init')}, {training.get('freeze_epochs')} frozen + "
            f"{training.get('epochs')} epochs (ran {training.get('epochs_run')}), lr {training.get('lr')}, "
            f"batch {training.get('batch_size')}"
        )
    per_tag = metrics.get("per_tag") or {}
    if per_tag:
        print(f"  {'tag':<24} {'precision':>9} {'recall':>7} {'AP':>6} {'thresh':>6} {'support':>7}")
        for tag, m in per_tag.items():
            ap = f"{m['ap']:.3f}" if isinstance(m.get("ap"), float) else "-"
            print(
                f"  {tag:<24} {m['precision']:>9.3f} {m['recall']:>7.3f} {ap:>6} "
                f"{m.get('threshold', 0.2):>6.2f} {m['support']:>7}"
            )
