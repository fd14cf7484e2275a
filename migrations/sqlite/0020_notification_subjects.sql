-- What each notification is about (its object's id), so an order's page lists its own.
ALTER TABLE notifications ADD COLUMN subject_id TEXT;
UPDATE notifications SET subject_id = json_extract(payload, '$.data.object.id');
CREATE INDEX notifications_subject ON notifications (subject_id, id) WHERE subject_id IS NOT NULL;
