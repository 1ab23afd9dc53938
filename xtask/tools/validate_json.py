"""Validates the toolkit's output files against their published JSON Schemas.

Usage: validate_json.py SCHEMA.json FILE [FILE...]

A .json FILE is validated as one document; a .csv FILE row by row, each
row as csv.DictReader gives it (column name to text), against the schema
of one row. Validation is by the jsonschema package (draft 2020-12), which
this project did not write. Prints one JSON object: the files and rows
checked and every error (file, row, path in the document, message); exits
1 when there is an error.
"""

import csv
import json
import sys

import jsonschema


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    files = rows = 0
    for path in sys.argv[2:]:
        files += 1
        if path.endswith(".csv"):
            with open(path, newline="", encoding="utf-8") as f:
                documents = list(csv.DictReader(f))
            rows += len(documents)
            # Every column of the header, also of a log with no row.
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            for name in header:
                if name not in schema.get("properties", {}):
                    errors.append({"file": path, "row": 1, "path": name,
                                   "message": f"column {name!r} is not in the schema"})
        else:
            with open(path, encoding="utf-8") as f:
                documents = [json.load(f)]
        for index, document in enumerate(documents):
            for error in validator.iter_errors(document):
                errors.append(
                    {
                        "file": path,
                        "row": index + 2 if path.endswith(".csv") else None,
                        "path": "/".join(str(p) for p in error.absolute_path),
                        "message": error.message[:500],
                    }
                )
    print(json.dumps({"files": files, "rows": rows, "errors": errors}, indent=1))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
