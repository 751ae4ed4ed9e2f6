"""The benchmarks page's machine paragraphs, as `bench.run_all` regenerates them."""

from bench.run_all import build, describe_machine, with_remarks

PAGE = """# Benchmarks

<!-- bench:machine -->
Machine **box-a**: 2 vCPU, 24 GiB RAM. Client, service and LINE emulator share the 2 CPUs, so
service-side figures are conservative (load average 0.50 when the run
started). It ran at half its usual pace that day.

Machine **box-b**: 4 vCPU. Client, service and LINE emulator share the 4 CPUs, so service-side
figures are conservative (load average 0.10 when the run started).
<!-- /bench:machine -->

<!-- bench:table -->
| what | target | SQLite | PostgreSQL | machine | date | command |
|---|---|---|---|---|---|---|
{rows}
<!-- /bench:table -->
""".format(
    rows="\n".join(
        f"| {what} | set-based | 1 | 2 | {machine} | 2026-12-01 | `x` |"
        for what, machine in (
            ("add 100,000 customer-group members in one call", "box-a"),
            ("import 10,000 contacts in one call (merge by external id)", "box-b"),
        )
    )
)


def test_a_machine_measured_again_keeps_its_remarks_after_the_new_description() -> None:
    described = describe_machine("box-a")
    machine_text, _table, _warnings = build(PAGE, [], set(), False, "box-a", described)
    paragraphs = machine_text.split("\n\n")
    assert paragraphs[0].startswith("Machine **box-a**: ")
    assert " ".join(paragraphs[0].split()).endswith(
        "when the run started). It ran at half its usual pace that day."
    )
    assert "load average 0.50" not in paragraphs[0]  # the new description, not the old one
    assert paragraphs[1].startswith("Machine **box-b**: 4 vCPU.")  # the other kept as it was
    assert all(len(line) <= 100 for line in machine_text.splitlines())


def test_a_paragraph_without_remarks_is_the_description_alone() -> None:
    described = describe_machine("box-b")
    previous = (
        "Machine **box-b**: 4 vCPU. Client, service and LINE emulator share the 4 CPUs, so"
        "\nservice-side figures are conservative (load average 0.10 when the run started)."
    )
    assert with_remarks(described, previous) == described
    assert with_remarks(described, None) == described
