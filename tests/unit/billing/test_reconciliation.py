import uuid

from services.billing.ledger.rules import (
    KnownJob,
    Placement,
    draft_key,
    lock_key,
    lock_keys,
    place,
)
from tests.support.events import generated, job_created

COMPANY = uuid.uuid4()
OTHER_COMPANY = uuid.uuid4()


def test_unknown_job_id_is_held_as_a_draft_under_that_id() -> None:
    job_id = uuid.uuid4()
    assert place(generated(COMPANY, job_id=job_id), []) == Placement(draft_job_id=str(job_id))


def test_draft_id_wins_as_the_key_when_both_are_sent() -> None:
    event = generated(COMPANY, job_id=uuid.uuid4(), draft="draft-1")
    assert draft_key(event) == "draft-1"
    assert place(event, []) == Placement(draft_job_id="draft-1")


def test_known_job_of_the_same_company_is_attached_at_once() -> None:
    job_id = uuid.uuid4()
    known = [KnownJob(job_id, COMPANY, None)]
    assert place(generated(COMPANY, job_id=job_id), known) == Placement(job_id=job_id)


def test_draft_uuid_sent_as_job_id_finds_the_job_made_from_it() -> None:
    draft = uuid.uuid4()
    job_id = uuid.uuid4()
    known = [KnownJob(job_id, COMPANY, str(draft))]
    assert place(generated(COMPANY, job_id=draft), known) == Placement(job_id=job_id)


def test_draft_id_finds_the_job_made_from_it() -> None:
    job_id = uuid.uuid4()
    known = [KnownJob(job_id, COMPANY, "draft-7")]
    assert place(generated(COMPANY, draft="draft-7"), known) == Placement(job_id=job_id)


def test_a_job_of_another_company_is_never_used() -> None:
    job_id = uuid.uuid4()
    known = [KnownJob(job_id, OTHER_COMPANY, "draft-7")]
    assert place(generated(COMPANY, job_id=job_id), known).is_draft
    assert place(generated(COMPANY, draft="draft-7"), known).is_draft


def test_the_client_job_id_comes_before_its_draft_id() -> None:
    named = uuid.uuid4()
    from_draft = uuid.uuid4()
    known = [KnownJob(from_draft, COMPANY, "draft-1"), KnownJob(named, COMPANY, None)]
    assert place(generated(COMPANY, job_id=named, draft="draft-1"), known) == Placement(
        job_id=named
    )


def test_a_generation_and_its_job_share_a_lock_key() -> None:
    draft = str(uuid.uuid4())
    job_id = uuid.uuid4()
    by_draft = set(lock_keys([generated(COMPANY, draft=draft)]))
    by_uuid_as_job_id = set(lock_keys([generated(COMPANY, job_id=uuid.UUID(draft))]))
    job = set(lock_keys([job_created(COMPANY, job_id=job_id, draft=draft)]))
    assert by_draft & job
    assert by_uuid_as_job_id & job
    assert set(lock_keys([generated(COMPANY, job_id=job_id)])) & set(
        lock_keys([job_created(COMPANY, job_id=job_id)])
    )


def test_lock_keys_differ_by_company_and_are_sorted_signed_64_bit() -> None:
    assert lock_key(COMPANY, "d") != lock_key(OTHER_COMPANY, "d")
    keys = lock_keys([generated(COMPANY, draft=f"d{i}") for i in range(50)])
    assert keys == sorted(keys)
    assert all(-(2**63) <= key < 2**63 for key in keys)
