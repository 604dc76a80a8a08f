"""PostgreSQL functions for the raters' hot paths: store an answer and hand out the next task
in one statement (one round trip instead of six).

The functions run exactly the statements ``study_app/assign.py`` runs on SQLite, in the same
order and with the same guards (row lock on the rater, guarded claim with FOR UPDATE SKIP
LOCKED and the re-check of ``filled``/lease after the lock, UNIQUE constraints); a unique
violation aborts the whole statement, as it aborts the transaction on SQLite. SQLite has no
stored functions and needs none: it runs in the server process, so a statement costs no
round trip. Nothing changes in the tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 21:50:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# o_state: 'task' (o_task, o_class_name, o_token_a, o_token_b, o_left describe it), 'finished'
# (o_code; a rater with nothing answered gets one too, the app shows "unavailable"), 'closed'.
NEXT_TASK = r'''
CREATE FUNCTION hvqeval_next_task(
    p_study integer, p_rater integer, p_done integer, p_now timestamp without time zone,
    p_lease text, p_token text, p_left text, p_expires timestamp without time zone,
    p_tasks integer, p_code text,
    OUT o_state text, OUT o_done integer, OUT o_task text, OUT o_class_name text,
    OUT o_token_a text, OUT o_token_b text, OUT o_left text, OUT o_code text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_item integer;
    v_status text;
BEGIN
    o_done := p_done;
    IF o_done IS NULL THEN
        -- queues one rater's parallel requests (two tabs)
        SELECT r.answered INTO o_done FROM rater r WHERE r.id = p_rater FOR UPDATE;
    END IF;
    SELECT a.token, a.item_id, a."left" INTO o_task, v_item, o_left
      FROM assignment a JOIN slot s ON s.id = a.slot_id
     WHERE a.rater_id = p_rater AND s.lease_token = a.lease_token AND s.filled = false
       AND s.lease_expires_at > p_now
     ORDER BY a.id LIMIT 1;
    IF NOT FOUND AND o_done < p_tasks THEN
        WITH claimed AS (
            UPDATE slot SET lease_token = p_lease, lease_expires_at = p_expires
             WHERE id = (SELECT s.id FROM slot s
                          WHERE s.study_id = p_study AND s.filled = false
                            AND (s.lease_expires_at IS NULL OR s.lease_expires_at < p_now)
                            AND NOT EXISTS (SELECT 1 FROM assignment a
                                             WHERE a.rater_id = p_rater AND a.item_id = s.item_id)
                            AND EXISTS (SELECT 1 FROM study WHERE id = p_study AND status = 'open')
                          ORDER BY s.slot_no, s.shuffle LIMIT 1 FOR UPDATE SKIP LOCKED)
               AND filled = false AND (lease_expires_at IS NULL OR lease_expires_at < p_now)
            RETURNING id, item_id)
        INSERT INTO assignment (study_id, token, item_id, rater_id, slot_id, lease_token, "left", issued_at, expires_at)
        SELECT p_study, p_token, claimed.item_id, p_rater, claimed.id, p_lease, p_left, p_now, p_expires FROM claimed
        RETURNING item_id INTO v_item;
        IF v_item IS NOT NULL THEN
            o_task := p_token;
            o_left := p_left;
        END IF;
    END IF;
    IF v_item IS NOT NULL THEN
        o_state := 'task';
        SELECT i.class_name, ia.token, ib.token INTO o_class_name, o_token_a, o_token_b
          FROM item i JOIN image ia ON ia.id = i.image_a_id LEFT JOIN image ib ON ib.id = i.image_b_id
         WHERE i.id = v_item;
        RETURN;
    END IF;
    IF o_done < p_tasks THEN
        SELECT status INTO v_status FROM study WHERE id = p_study;
        IF v_status IS DISTINCT FROM 'open' AND o_done = 0 THEN
            o_state := 'closed';  -- no new tasks, and nothing answered: no code
            RETURN;
        END IF;
    END IF;
    UPDATE rater SET completion_code = p_code, finished_at = p_now
     WHERE id = p_rater AND completion_code IS NULL;
    SELECT completion_code INTO o_code FROM rater WHERE id = p_rater;
    o_state := 'finished';
END
$$
'''

# o_outcome: 'stored' (o_done = the rater's answered count; with p_next the next task follows
# as in hvqeval_next_task), 'no-task' (no such assignment of this rater), 'answered' (its slot
# is already filled with this lease: a repeated submit), 'expired' (the lease went to someone
# else). Nothing is written unless the outcome is 'stored'.
ANSWER = r'''
CREATE FUNCTION hvqeval_answer(
    p_study integer, p_rater integer, p_assignment text, p_rating integer, p_side text,
    p_reason text, p_ms integer, p_now timestamp without time zone, p_next boolean,
    p_lease text, p_token text, p_left text, p_expires timestamp without time zone,
    p_tasks integer, p_code text,
    OUT o_outcome text, OUT o_done integer, OUT o_state text, OUT o_task text,
    OUT o_class_name text, OUT o_token_a text, OUT o_token_b text, OUT o_left text, OUT o_code text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    f record;
    v_choice text;
BEGIN
    SELECT a.id, a.item_id, a.slot_id, a.lease_token, a."left" AS side, s.filled, s.lease_token AS slot_lease
      INTO f
      FROM assignment a JOIN slot s ON s.id = a.slot_id
     WHERE a.token = p_assignment AND a.rater_id = p_rater AND a.study_id = p_study;
    IF NOT FOUND THEN
        o_outcome := 'no-task';
        RETURN;
    END IF;
    IF f.filled AND f.slot_lease = f.lease_token THEN
        o_outcome := 'answered';
        RETURN;
    END IF;
    UPDATE slot SET filled = true, lease_expires_at = NULL
     WHERE id = f.slot_id AND lease_token = f.lease_token AND filled = false;
    IF NOT FOUND THEN
        -- lost to a concurrent copy of this submit (then the slot is filled with this lease),
        -- or the lease expired and went to someone else
        PERFORM 1 FROM slot WHERE id = f.slot_id AND filled AND lease_token = f.lease_token;
        o_outcome := CASE WHEN FOUND THEN 'answered' ELSE 'expired' END;
        RETURN;
    END IF;
    v_choice := CASE p_side
                    WHEN 'left' THEN f.side
                    WHEN 'right' THEN CASE f.side WHEN 'a' THEN 'b' ELSE 'a' END
                    ELSE p_side END;
    INSERT INTO answer (study_id, assignment_id, item_id, rater_id, "left", rating, choice, unknown_reason,
                        response_ms, created_at)
    VALUES (p_study, f.id, f.item_id, p_rater, f.side, p_rating, v_choice, p_reason, p_ms, p_now);
    -- counting the answer also takes the rater's row lock, held to the end of the statement
    UPDATE rater SET answered = answered + 1 WHERE id = p_rater RETURNING answered INTO o_done;
    o_outcome := 'stored';
    IF p_next THEN
        SELECT n.o_state, n.o_task, n.o_class_name, n.o_token_a, n.o_token_b, n.o_left, n.o_code
          INTO o_state, o_task, o_class_name, o_token_a, o_token_b, o_left, o_code
          FROM hvqeval_next_task(p_study, p_rater, o_done, p_now, p_lease, p_token, p_left, p_expires,
                                 p_tasks, p_code) n;
    END IF;
END
$$
'''


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(NEXT_TASK)
    op.execute(ANSWER)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION hvqeval_answer(integer, integer, text, integer, text, text, integer, "
               "timestamp without time zone, boolean, text, text, text, timestamp without time zone, integer, text)")
    op.execute("DROP FUNCTION hvqeval_next_task(integer, integer, integer, timestamp without time zone, text, text, "
               "text, timestamp without time zone, integer, text)")
