"""tessel/serve/traces.py: our CSV and the Azure LLM inference trace read, ours written, and
every malformed file refused in one line naming the file, the line and the column."""
import re
from pathlib import Path

import pytest

from tessel.errors import USER_ERRORS
from tessel.serve import Request, ServeError, read_trace, synthetic, write_trace

ROOT = Path(__file__).parents[2]

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,4808,10
2023-11-16 18:15:50.9951690,3180,8
2023-11-16 18:15:50.9951690,110,27
2023-11-16 18:16:01.0000001,7433,14
"""


def write(tmp_path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_our_format_reads_in_file_order_with_ids(tmp_path):
    path = write(tmp_path, "arrival_s,prompt_tokens,output_tokens\n0,12,3\n0.5,7,1\n\n0.5, 9 ,2\n")
    assert read_trace(path) == [Request(0, 0.0, 12, 3), Request(1, 0.5, 7, 1), Request(2, 0.5, 9, 2)]


def test_columns_may_come_in_any_order_and_a_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffoutput_tokens,arrival_s,prompt_tokens\n3,1.25,12\n".encode())
    assert read_trace(path) == [Request(0, 1.25, 12, 3)]


def test_the_azure_trace_reads_as_published(tmp_path):
    requests = read_trace(write(tmp_path, AZURE))
    assert requests == [Request(0, 0.0, 4808, 10), Request(1, 4.314579, 3180, 8),
                        Request(2, 4.314579, 110, 27), Request(3, 14.3194101, 7433, 14)]


def test_azure_timestamps_cross_midnight_and_take_any_fraction(tmp_path):
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 23:59:59.9,5,5\n"
            "2023-11-17 00:00:00.1000000,5,5\n2023-11-17 00:00:01,5,5\n")
    assert [r.arrival_s for r in read_trace(write(tmp_path, text))] == [0.0, 0.2, 1.1]


def test_a_written_trace_reads_back_exactly(tmp_path):
    requests = synthetic(100, 3.0, "uniform:1,4000", "lognormal:50,1,max=500", seed=7)
    write_trace(requests, tmp_path / "t.csv")
    assert read_trace(tmp_path / "t.csv") == requests
    assert not [p for p in tmp_path.iterdir() if p.name != "t.csv"]      # no temporary file left


def test_the_example_trace_is_what_its_readme_says_made_it(tmp_path):
    made = synthetic(200, 4.0, "lognormal:512,0.8,max=4096", "lognormal:128,0.8,max=1024", seed=0)
    write_trace(made, tmp_path / "t.csv")
    example = ROOT / "examples" / "traces" / "synthetic-200.csv"
    assert example.read_bytes() == (tmp_path / "t.csv").read_bytes()
    assert read_trace(example) == made


HEADER = "arrival_s,prompt_tokens,output_tokens\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize("text, message", [
    ("", r"empty file, expected a header arrival_s,prompt_tokens,output_tokens or "
         r"TIMESTAMP,ContextTokens,GeneratedTokens"),
    ("\n  \n", r"empty file"),
    (HEADER, r"no requests after the header"),
    ("time,in,out\n1,2,3\n", r"line 1: unknown header 'time,in,out', expected arrival_s,prompt_tokens,"),
    ("arrival_s,prompt_tokens\n1,2\n", r"line 1: missing column output_tokens \(expected arrival_s,"),
    ("arrival_s,prompt_tokens,output_tokens,user\n1,2,3,x\n",
     r"line 1: unknown column 'user' \(expected arrival_s,prompt_tokens,output_tokens\)"),
    ("arrival_s,prompt_tokens,output_tokens,arrival_s\n", r"line 1: a column appears twice"),
    ("TIMESTAMP,ContextTokens,output_tokens\n", r"line 1: unknown column 'output_tokens' \(expected TIMESTAMP,"),
    (HEADER + "0,1,1\n0,2\n", r"line 3: expected 3 fields, got 2"),
    (HEADER + "0,1,1\n" * 5 + "1,abc,2\n", r"line 7, column prompt_tokens: 'abc' is not a positive integer"),
    (HEADER + "0,0,1\n", r"line 2, column prompt_tokens: '0' is not a positive integer"),
    (HEADER + "0,5,-3\n", r"line 2, column output_tokens: '-3' is not a positive integer"),
    (HEADER + "0,5,2.0\n", r"line 2, column output_tokens: '2.0' is not a positive integer"),
    (HEADER + "-1,5,2\n", r"line 2, column arrival_s: '-1' is not a finite number of seconds >= 0"),
    (HEADER + "nan,5,2\n", r"line 2, column arrival_s: 'nan' is not a finite number of seconds >= 0"),
    (HEADER + "2,5,2\n1.5,5,2\n", r"line 3, column arrival_s: '1.5' is earlier than the line before: "
                                  r"arrivals must not go backwards"),
    (AZURE_HEADER + "2023-11-16 18:15:46,5,0\n", r"line 2, column GeneratedTokens: '0' is not a positive integer"),
    (AZURE_HEADER + "16/11/2023 18:15,5,1\n",
     r"line 2, column TIMESTAMP: '16/11/2023 18:15' is not a timestamp like 2023-11-16 18:15:46.6805900"),
    (AZURE_HEADER + "2023-02-30 18:15:46.1,5,1\n", r"line 2, column TIMESTAMP: '2023-02-30 18:15:46.1' is not a"),
    (AZURE_HEADER + "2023-11-16 18:15:46.5,5,1\n2023-11-16 18:15:46.4999999,5,1\n",
     r"line 3, column TIMESTAMP: '2023-11-16 18:15:46.4999999' is earlier than the line before"),
])
def test_a_malformed_trace_is_refused_in_one_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ServeError, match=f"^{re.escape(str(path))}: {message}") as error:
        read_trace(path)
    assert "\n" not in str(error.value)


def test_a_missing_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(ServeError, match=r"nope.csv: cannot read the trace \(No such file or directory\)"):
        read_trace(tmp_path / "nope.csv")


def test_trace_errors_are_the_command_lines_input_errors():
    assert issubclass(ServeError, USER_ERRORS)                # exit status 2, one line
