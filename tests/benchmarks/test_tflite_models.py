"""benchmarks.tflite_models: the README table and its argument checks (the export
and timing themselves are model_inspect.py's, tested in tests/export)."""
import pytest

from benchmarks import tflite_models


def test_markdown_table_rows():
    rows = [dict(model="efficientdet-lite0", quantize="int8", threads=1, p50_ms=20.04,
                 p90_ms=21.5, images_per_second=49.9, mib=4.44)]
    table = tflite_models.markdown(rows).splitlines()
    assert table[0].startswith("| model | TFLite | threads | p50 ms")
    assert table[2] == "| efficientdet-lite0 | int8 | 1 | 20.0 | 21.5 | 49.90 | 4.4 |"


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int4"], "--quantize"), (["--threads", "one"], "--threads"),
    (["--threads", "-1"], "--threads")])
def test_bad_arguments_are_one_clear_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        tflite_models.main(["--output_dir", str(tmp_path), *args])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
