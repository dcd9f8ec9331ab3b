"""labelbridge: Labelbox model outputs as Label Studio predictions, Label Studio annotations back
to Labelbox as ground truth, with region ids that survive the round trip.

Rooms (each a subpackage; its ``__init__`` says what the others may use):

``model/``         the neutral model both adapters meet in: regions and shapes, the id rules,
                   the conversion report, the sink seam (import outcomes, failure kinds).
                   Standard library only; knows neither product.
``labelbox/``      the Labelbox adapter: export rows -> regions, regions -> labelbox python types
                   -> NDJSON, the ontology (features, questions, options), the SDK gateway
                   (imports, exports, labels, the project's ontology).
``labelstudio/``   the Label Studio adapter: regions <-> result JSON (driven by the label
                   config through ``LabelInterface``), the name mapping, webhook bodies, task <->
                   data row identity, the REST client.
``postgres/``      PostgreSQL, the store several replicas share (``LABELBRIDGE_DATABASE_URL``):
                   the pool, versioned schemas, work run on one replica at a time. An adapter
                   for a database; the flows' drivers bring their own tables and queries.
``predictions/``   the Labelbox -> Label Studio flow: the prediction index (build, store) and
                   the predictor that answers ``/predict`` from it.
``groundtruth/``   the Label Studio -> Labelbox flow: the durable outbox, delivery to a sink,
                   reconciliation through the Label Studio API.
``tools/``         what a user runs by hand: doctor, connect, bulk convert, ``make demo`` and the
                   local Label Studio it shares with the e2e tests (``localls``).
``service/``       the edge: HTTP app, runtime wiring, CLI.
``mlbackend``      the edge too: ``LabelboxModel``, the model class for the official label-studio-ml
                   framework (it uses ``service``'s runtime; imported only inside that framework,
                   which is not one of labelbridge's dependencies).
``settings``       every environment variable, read and validated once.

Imports point one way: the edge (service, mlbackend) -> flows (predictions, groundtruth) and
tools -> adapters (labelbox, labelstudio, postgres) -> model. The two adapters never import each other; flows never import
each other; ``settings`` is read by flows, tools and the edge, never by adapters or the model.
``tests/unit/test_layout.py`` enforces this.
"""
