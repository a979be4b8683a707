-- +goose Up
-- The consumer kit deletes inbox rows once no copy of their event can come
-- back (events/consumer's inbox retention), and an ordered consumer's
-- aggregate rows once idle as long: this index finds the idle ones, as
-- inbox_received_idx finds the old inbox rows.
CREATE INDEX inbox_sequences_updated_idx ON inbox_sequences (consumer, updated_at);

-- +goose Down
DROP INDEX inbox_sequences_updated_idx;
