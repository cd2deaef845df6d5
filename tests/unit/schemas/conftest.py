"""`avro_backend`: a test run once with the generated Python Avro codec and once with the native
one (schemas/_avro_native.c), chosen as production chooses it: by OPENMONETIZE_PURE_AVRO."""

from __future__ import annotations

import pytest

from schemas import avro_decoder

NOT_BUILT = ("schemas._avro_native is not built (no C compiler when the package was installed): "
             "only the pure-Python path is tested; `make venv` with gcc builds it")


@pytest.fixture(params=["python", "native"])
def avro_backend(request, monkeypatch) -> str:
    if request.param == "native":
        if avro_decoder._avro_native is None:
            pytest.skip(NOT_BUILT)
        monkeypatch.delenv("OPENMONETIZE_PURE_AVRO", raising=False)
    else:
        monkeypatch.setenv("OPENMONETIZE_PURE_AVRO", "1")
    return request.param
