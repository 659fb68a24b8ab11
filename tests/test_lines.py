"""le_ray.data.lines: the byte-level line check (ragged rows, blank lines), against hand-made files at block sizes
that split lines and quoted fields."""

from le_ray.data.lines import scan_lines


def test_line_scan_across_block_boundaries(tmp_path):
    path = tmp_path / "t.csv"
    cases = [("a,b,c\n1,2,3\n4,5,6", dict(rows=2)), ("a,b,c\n1,2,3\n4,5,6\n\n \n", dict(rows=2, trailing_blank=True)),
             ("a,b,c\n1,2,3\n4,5\n", dict(ragged=(2, 2))), ("a,b,c\n1,\"2,x\",3\n4,5,6\n", dict(rows=2)),
             ("a,b,c\n1,2,3\n\n4,5,6\n", dict(blank=2)), ("a,b,c\n1,2,3\n4,5\n", dict(rows=1))]
    for i, (text, want) in enumerate(cases):
        path.write_text(text)
        for block in (3, 7, 1 << 20):
            found = scan_lines(path, separator=",", quote='"', header=True, block=block,
                               max_rows=1 if i == len(cases) - 1 else None)
            assert {k: getattr(found, k) for k in want} == want, (text, block, found)


def test_line_scan_counts_fields_like_a_naive_reference(tmp_path):
    import random

    rng, path = random.Random(7), tmp_path / "r.csv"
    for _ in range(200):
        rows = [[str(rng.randint(0, 9)) for _ in range(rng.choice((3, 3, 3, 2, 4)))] for _ in range(rng.randint(1, 12))]
        path.write_text("a,b,c\n" + "\n".join(",".join(r) for r in rows) + "\n")
        bad = next(((i + 1, len(r)) for i, r in enumerate(rows) if len(r) != 3), None)
        for block in (4, 9, 64):
            found = scan_lines(path, separator=",", quote='"', header=True, block=block)
            assert found.ragged == bad and (bad is not None or found.rows == len(rows)), (rows, block, found)


def test_the_first_problem_in_file_order_wins_over_a_later_unparsable_line(tmp_path):
    """An open quote or a line csv refuses is reported only when no ragged or blank line comes before it (in the
    same block or an earlier one); a multi-line quoted field counts as an open quote."""
    path = tmp_path / "t.csv"
    cases = [("a,b,c\n1,2\n4,\"5,6\n7,8,9\n", dict(ragged=(1, 2), unparsable=None)),
             ("a,b,c\n1,2,3\n\n4,\"5,6\n", dict(blank=2, unparsable=None)),
             ("a,b,c\n1,2,3\n4,\"5,6\n7,8\n", dict(ragged=None)),
             ("a,b,c\n1,\"x\ny\",3\n4,5,6\n", dict(rows=None, ragged=None, blank=None)),
             ("a,b,c\n1,2,3\n4,\"5\"\r6,7\n", dict(ragged=None))]
    for text, want in cases:
        path.write_bytes(text.encode())
        for block in (3, 7, 1 << 20):
            found = scan_lines(path, separator=",", quote='"', header=True, block=block)
            assert {k: getattr(found, k) for k in want} == want, (text, block, found)
            if "unparsable" not in want:
                assert found.unparsable is not None and found.unparsable[0] in (1, 2), (text, block, found)
