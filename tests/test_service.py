"""The HTTP service, run for real: matching, auth, errors, curation, HMA routes, metrics."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from hashmatch import ReferenceStore
from hashmatch.service import make_key

from ._serve_helpers import Server, add_image, jpeg, reference_hexes, resized

KNOWN, OTHER, NEW = 11, 12, 13  # seeds of synthetic images


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    store = tmp / "refs.db"
    known = jpeg(KNOWN)
    ids = add_image(store, "known", known, "cat-a")
    keys = {role: make_key(f"k-{role.replace(',', '-')}:{role}") for role in ("match", "curate", "match,curate")}
    (tmp / "keys.txt").write_text("# test keys\n" + "\n".join(line for _, line in keys.values()) + "\n")
    server = Server(store, tmp / "server.log", "--keys", str(tmp / "keys.txt"))
    try:
        server.wait_ready()
        yield {"url": server.url, "store": store, "known": known, "ids": ids, "server": server,
               "match": {"Authorization": f"Bearer {keys['match'][0]}"},
               "curate": {"Authorization": f"Bearer {keys['curate'][0]}"},
               "both": {"Authorization": f"Bearer {keys['match,curate'][0]}"},
               "tokens": [t for t, _ in keys.values()]}
    finally:
        server.stop()


def _post(served, path, role="match", **kw):
    return httpx.post(served["url"] + path, headers=served[role], timeout=60, **kw)


def _get(served, path, role="match", **kw):
    return httpx.get(served["url"] + path, headers=served[role], timeout=60, **kw)


def _assert_error(r: httpx.Response, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["kind"] == kind and body["status"] == status and isinstance(body["message"], str)
    return body


def test_ready_reports_counts_generation_and_worker(served):
    r = httpx.get(served["url"] + "/ready")
    body = r.json()
    assert r.status_code == 200 and body["ready"] is True
    with ReferenceStore(served["store"]) as store:
        assert body["generation"] <= store.generation
    assert body["entries"] >= 2 and body["lists"] >= 1 and isinstance(body["worker"], int)
    assert httpx.get(served["url"] + "/health").json() == {"status": "alive"}


def test_match_raw_body_and_multipart_give_the_entries(served):
    copy = resized(served["known"], 0.6)
    raw = _post(served, "/v1/match", content=copy).json()
    multi = _post(served, "/v1/match", files={"image": ("u.jpg", copy, "image/jpeg")}).json()
    for body in (raw, multi):
        assert body["matched"] is True
        got = {(m["algorithm"], m["entry_id"]) for m in body["matches"]}
        assert {("pdq", served["ids"]["pdq"]), ("phash", served["ids"]["phash"])} <= got
        m = body["matches"][0]
        assert set(m) == {"entry_id", "list", "label", "external_id", "algorithm", "distance", "orientation", "stage"}
        assert m["list"] == "known" and m["label"] == "cat-a" and m["stage"] == "global"
        assert "hashes" not in body
    assert _post(served, "/v1/match", content=jpeg(OTHER)).json() == {"matched": False, "matches": [],
                                                                      "generation": raw["generation"]}


def test_match_finds_a_rotated_copy_and_names_the_orientation(served):
    from PIL import Image
    import io

    img = Image.open(io.BytesIO(served["known"])).transpose(Image.Transpose.ROTATE_90)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    body = _post(served, "/v1/match", content=buf.getvalue()).json()
    pdq = [m for m in body["matches"] if m["algorithm"] == "pdq"]
    assert pdq and pdq[0]["orientation"] not in (None, "orig")


def test_responses_never_carry_reference_hashes(served):
    refs = reference_hexes(served["known"])
    copy = resized(served["known"], 0.7)
    texts = [
        _post(served, "/v1/match?include_hashes=true", content=copy).text,
        _post(served, "/m/lookup", files={"photo": ("p.jpg", copy)}).text,
        _get(served, "/v1/lists", role="curate").text,
        _get(served, "/metrics").text,
        _get(served, f"/m/lookup?signal_type=pdq&signal={refs[0]}").text,
    ]
    for text in texts:
        for ref in refs:
            assert ref not in text.lower()
    assert served["server"].log().count("\n") < 5  # nothing logged per request


def test_include_hashes_returns_the_uploads_own_hashes(served):
    copy = resized(served["known"], 0.7)
    body = _post(served, "/v1/match?include_hashes=true", content=copy).json()
    assert body["hashes"]["pdq"]["hash"] == reference_hexes(copy)[0]
    assert isinstance(body["hashes"]["pdq"]["quality"], int)


@pytest.mark.parametrize("payload", [b"", b"not an image at all", None])
def test_match_refuses_what_is_not_an_image_with_415(served, payload):
    data = served["known"][: len(served["known"]) // 3] if payload is None else payload
    _assert_error(_post(served, "/v1/match", content=data), 415, "unreadable_image")


def test_multipart_without_the_image_field_is_422(served):
    _assert_error(_post(served, "/v1/match", files={"other": ("x", b"123")}), 422, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"hashes": [{"algorithm": "pdq", "hash": "zz" * 32}]},
        {"hashes": [{"algorithm": "pdq", "hash": "ab" * 8}]},
        {"hashes": [{"algorithm": "nosuch", "hash": "ab" * 8}]},
        {"hashes": [{"algorithm": "pdq", "hash": "ab" * 32, "quality": 101}]},
        {"hashes": [{"hash": "ab" * 32}]},
    ],
)
def test_lookup_refuses_malformed_hashes_with_422(served, body):
    err = _assert_error(_post(served, "/v1/lookup", json=body), 422, "invalid_hashes")
    assert "ab" * 8 not in err["message"] and "zz" * 8 not in err["message"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"hashes": []}', b'{"hashes": "x"}'])
def test_lookup_refuses_bodies_of_the_wrong_shape_with_422(served, content):
    _assert_error(_post(served, "/v1/lookup", content=content), 422, "invalid_request")


def test_lookup_matches_precomputed_hashes(served):
    from hashmatch import compute_hashes

    r = compute_hashes(resized(served["known"], 0.5), ["pdq"])["pdq"][0]
    body = _post(served, "/v1/lookup", json={"hashes": [{"algorithm": "pdq", "hash": r.hash.hex(),
                                                          "quality": r.quality}]}).json()
    assert [m["entry_id"] for m in body["matches"]] == [served["ids"]["pdq"]]


def test_keys_and_roles(served):
    url = served["url"]
    _assert_error(httpx.post(url + "/v1/lookup", json={}), 401, "unauthorized")
    _assert_error(httpx.post(url + "/v1/lookup", json={}, headers={"Authorization": "Bearer nope"}), 401,
                  "unauthorized")
    _assert_error(httpx.post(url + "/v1/lookup", json={}, headers={"Authorization": "Basic abc"}), 401,
                  "unauthorized")
    _assert_error(_post(served, "/v1/lookup", role="curate", json={}), 403, "forbidden")
    _assert_error(_get(served, "/v1/lists", role="match"), 403, "forbidden")
    assert _get(served, "/v1/lists", role="both").status_code == 200
    assert httpx.get(url + "/ready").status_code == 200  # probes need no key
    log = served["server"].log()
    assert not any(token in log for token in served["tokens"])


def test_curation_add_match_retract_stops_matching(served):
    new = jpeg(NEW)
    from hashmatch import compute_hashes

    r = compute_hashes(new, ["pdq"])["pdq"][0]
    query = {"hashes": [{"algorithm": "pdq", "hash": r.hash.hex(), "quality": r.quality}]}
    assert _post(served, "/v1/lookup", json=query).json()["matched"] is False
    added = _post(served, "/v1/lists/added-by-api/entries", role="curate", json={"entries": [
        {"algorithm": "pdq", "hash": r.hash.hex(), "quality": r.quality, "label": "l", "external_id": "e"}]}).json()
    assert added["added"] == 1 and len(added["entry_ids"]) == 1
    entry_id = added["entry_ids"][0]
    # This worker refreshed before answering: the next request here sees the add.
    body = _post(served, "/v1/match", content=new).json()
    assert entry_id in [m["entry_id"] for m in body["matches"]]
    assert body["generation"] >= added["generation"]
    again = _post(served, "/v1/lists/added-by-api/entries", role="curate", json=added and {"entries": [
        {"algorithm": "pdq", "hash": r.hash.hex()}]}).json()
    assert again["added"] == 0 and again["duplicates"] == 1
    lists = {x["name"]: x for x in _get(served, "/v1/lists", role="curate").json()["lists"]}
    assert lists["added-by-api"]["algorithms"]["pdq"] == {"active": 1, "retracted": 0}
    out = _post(served, f"/v1/entries/{entry_id}/retract", role="curate", json={"reason": "appeal"}).json()
    assert out["retracted"] is True and out["was_active"] is True
    assert _post(served, "/v1/lookup", json=query).json()["matched"] is False
    assert _post(served, f"/v1/entries/{entry_id}/retract", role="curate").json()["retracted"] is False
    _assert_error(_post(served, "/v1/entries/999999/retract", role="curate"), 404, "not_found")
    with ReferenceStore(served["store"]) as store:
        assert store.get(entry_id).retract_reason == "appeal"


def test_import_reports_line_numbered_rejections(served):
    good = "ab" * 32
    text = f"hash,algorithm,label\n{good},pdq,ok\nnothex,pdq,bad\n{'cd' * 32},pdq,ok2\n"
    body = _post(served, "/v1/lists/imported/import", role="curate", content=text.encode()).json()
    assert body["added"] == 2 and [r["line"] for r in body["rejected"]] == [3]
    strict = _post(served, "/v1/lists/imported2/import?strict=true", role="curate", content=text.encode())
    _assert_error(strict, 422, "invalid_hash_list")
    _assert_error(_post(served, "/v1/lists/x/import?format=nope", role="curate", content=b""), 400,
                  "invalid_request")


def test_batch_matches_each_image_and_reports_bad_ones_in_place(served):
    files = [("image", ("a.jpg", resized(served["known"], 0.5))), ("image", ("b.jpg", b"junk")),
             ("image", ("c.jpg", jpeg(OTHER)))]
    body = _post(served, "/v1/match/batch", files=files).json()
    names = [r["name"] for r in body["results"]]
    assert names == ["a.jpg", "b.jpg", "c.jpg"]
    assert body["results"][0]["matched"] is True
    assert body["results"][1]["error"]["kind"] == "unreadable_image"
    assert body["results"][2]["matched"] is False


def test_hash_route_hashes_without_matching(served):
    body = _post(served, "/v1/hash?algorithms=phash,dhash", content=served["known"]).json()
    assert set(body["hashes"]) == {"phash", "dhash"} and re.fullmatch("[0-9a-f]{16}", body["hashes"]["dhash"]["hash"])
    _assert_error(_post(served, "/v1/hash?algorithms=nosuch", content=served["known"]), 400, "invalid_request")


def test_hma_routes_answer_in_hma_shapes(served):
    url = served["url"]
    status = httpx.get(url + "/status")
    assert status.status_code == 200 and status.text == "I-AM-ALIVE"
    copy = resized(served["known"], 0.6)
    hashed = _post(served, "/h/hash", files={"photo": ("p.jpg", copy)}).json()
    assert list(hashed) == ["pdq"] and re.fullmatch("[0-9a-f]{64}", hashed["pdq"])
    by_bank = _get(served, "/m/lookup", params={"signal_type": "pdq", "signal": hashed["pdq"]}).json()
    assert by_bank == {"known": [{"bank_content_id": served["ids"]["pdq"], "distance": by_bank["known"][0]["distance"]}]}
    assert by_bank["known"][0]["distance"].isdigit()
    posted = _post(served, "/m/lookup", files={"photo": ("p.jpg", copy)}).json()
    assert posted["pdq"]["known"][0]["bank_content_id"] == served["ids"]["pdq"]
    _assert_error(_get(served, "/m/lookup", params={"signal_type": "pdq"}), 400, "invalid_request")


def test_metrics_cover_requests_stages_lists_and_index(served):
    _post(served, "/v1/match", content=resized(served["known"], 0.5))
    text = _get(served, "/metrics").text
    for needle in ('hashmatch_http_requests_total{method="POST",route="/v1/match",status="200"}',
                   'hashmatch_http_request_duration_seconds_bucket', 'hashmatch_stage_duration_seconds_count{stage="hash"}',
                   'hashmatch_stage_duration_seconds_count{stage="match"}', 'hashmatch_matches_total{list="known"}',
                   'hashmatch_index_references{algorithm="pdq"}', "hashmatch_store_generation ",
                   "hashmatch_refresh_age_seconds ", "hashmatch_ready 1.0"):
        assert needle in text, needle
    _assert_error(httpx.get(served["url"] + "/metrics"), 401, "unauthorized")


def test_openapi_document_and_docs_page(served):
    doc = httpx.get(served["url"] + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/match", "/v1/lookup", "/v1/lists/{name}/import", "/m/lookup", "/v1/rematch"):
        assert path in doc["paths"]
    assert doc["paths"]["/v1/match"]["post"]["security"] == [{"bearer": ["match"]}]
    page = httpx.get(served["url"] + "/docs")
    assert page.status_code == 200 and "/v1/match/batch" in page.text


def test_unknown_route_and_method_use_the_error_shape(served):
    _assert_error(httpx.get(served["url"] + "/nope"), 404, "not_found")
    _assert_error(httpx.get(served["url"] + "/v1/match", headers=served["match"]), 405, "method_not_allowed")


def test_rematch_reports_only_entries_added_since(served):
    new = jpeg(NEW + 100)
    from hashmatch import compute_hashes

    r = compute_hashes(new, ["pdq"])["pdq"][0]
    logged = {"id": "upload-7", "hashes": [{"algorithm": "pdq", "hash": r.hash.hex(), "quality": r.quality}]}
    before = _post(served, "/v1/rematch", json={"uploads": [logged, {"id": "bad", "hashes": [{"algorithm": "pdq",
                                                 "hash": "x"}]}]}).json()
    assert [x["id"] for x in before["results"]] == ["bad"] and before["results"][0]["error"]["status"] == 422
    since = before["generation"]
    added = _post(served, "/v1/lists/later/entries", role="curate", json={"entries": [
        {"algorithm": "pdq", "hash": r.hash.hex()}]}).json()
    after = _post(served, "/v1/rematch", json={"since_generation": since, "uploads": [logged]}).json()
    assert after["results"] == [{"id": "upload-7", "matches": [after["results"][0]["matches"][0]]}]
    assert after["results"][0]["matches"][0]["entry_id"] == added["entry_ids"][0]
    later = _post(served, "/v1/rematch", json={"since_generation": after["generation"], "uploads": [logged]}).json()
    assert later["results"] == []
    known = _post(served, "/v1/rematch", json={"uploads": [{**logged, "known_entry_ids": added["entry_ids"]}]}).json()
    assert known["results"] == []


def test_the_service_logs_no_request_bodies_or_keys(served):
    log = served["server"].log()
    assert "Bearer" not in log and "hmk_" not in log
    assert json.dumps(reference_hexes(served["known"]))[2:20] not in log
