-- Other names a model answers to (`gpt-4o-mini` -> `openai/gpt-4o-mini`): each alias names one
-- model, and no alias is another model's id (checked when they are set, store/*/catalog.py).
CREATE TABLE model_aliases (
  alias     TEXT PRIMARY KEY,
  model_id  TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE
);
CREATE INDEX model_aliases_by_model ON model_aliases (model_id);
