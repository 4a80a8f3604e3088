"""The catalog against the registry of a real Xinference 4.1 server (issue 3: "spec as a running
server sees it"). Every spec the catalog offers must resolve on the live server to the same
model id on the hub the catalog says, quirks included."""

import pytest

from xinf_planner.core import catalog
from xinf_planner.core.catalog.live import live_spec
from xinf_planner.core.catalog.specs import DEFAULT_HUB
from xinf_planner.errors import InvalidInput

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(xinf_server):
    from xinference_client import RESTfulClient

    return RESTfulClient(xinf_server.url, api_key=xinf_server.token())


def _all_specs():
    return [s for m in catalog.all_models() for s in catalog.specs_for(m)]


def test_every_catalog_spec_resolves_live_to_the_same_model_id(client):
    specs = _all_specs()
    assert len(specs) >= 100
    checked = 0
    for spec in specs:
        hub = spec.download_hub or DEFAULT_HUB
        found = live_spec(client, spec)
        assert found["model_format"] == spec.model_format
        assert found["quantization"].lower() == spec.quantization.lower()
        assert found["model_hub"] == hub, spec
        assert found["model_id"] == spec.model_ids[hub].replace("{quantization}", found["quantization"]), spec
        checked += 1
    assert checked == len(specs)


def test_quirks_as_the_live_server_sees_them(client):
    llama8 = catalog.get_model("deepseek-r1-distill-llama:8")
    gguf = next(s for s in catalog.specs_for(llama8) if s.model_format == "ggufv2")
    # the default hub labels the 8B GGUF as 1_5; ModelScope labels it 8
    assert live_spec(client, gguf)["model_size_in_billions"] in ("1_5", 1.5)
    assert str(live_spec(client, gguf, hub="modelscope")["model_size_in_billions"]) == "8"

    qwen32 = catalog.get_model("deepseek-r1-distill-qwen:32")
    gptq = [s for s in catalog.specs_for(qwen32) if s.model_format == "gptq"]
    assert gptq and all(s.download_hub == "modelscope" for s in gptq)
    # not on the default hub at all: asking there must fail, not silently take another spec
    with pytest.raises(InvalidInput):
        live_spec(client, gptq[0], hub=DEFAULT_HUB)

    llama70 = catalog.get_model("deepseek-r1-distill-llama:70")
    single = [s for s in catalog.specs_for(llama70) if s.model_format == "ggufv2" and not s.launchable]
    assert single, "the single-file 70B GGUF specs are marked unlaunchable"
    for s in single:
        assert "Qwen-7B" in live_spec(client, s)["model_file_name_template"]
