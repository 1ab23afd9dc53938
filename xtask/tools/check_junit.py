"""Reads a JUnit XML file as CI tools do, for the tests of `--junit`.

Usage: check_junit.py SCHEMA.xsd FILE.xml

Validates FILE against the XSD (xmlschema), then reads it with junitparser,
a JUnit reader written apart from this project, and prints one JSON
object: whether it is valid (and why not), the counts the file states, the
counts junitparser finds from the test cases themselves, and every suite
with its cases (name, class, result, message, text, system-out).
"""

import json
import sys

import junitparser
import xmlschema


def case_result(case):
    if case.is_passed:
        return "passed", None, None
    if case.is_skipped:
        kind = "skipped"
    else:
        kind = type(case.result[0]).__name__.lower()  # failure or error
    result = case.result[0]
    return kind, result.message, result.text


def main():
    schema_path, xml_path = sys.argv[1], sys.argv[2]
    schema = xmlschema.XMLSchema(schema_path)
    error = None
    try:
        schema.validate(xml_path)
    except xmlschema.XMLSchemaException as exc:
        error = str(exc)

    xml = junitparser.JUnitXml.fromfile(xml_path)
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    out_suites = []
    counted = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        cases = []
        for case in suite:
            result, message, text = case_result(case)
            counted["tests"] += 1
            if result == "failure":
                counted["failures"] += 1
            elif result == "error":
                counted["errors"] += 1
            elif result == "skipped":
                counted["skipped"] += 1
            cases.append(
                {
                    "name": case.name,
                    "classname": case.classname,
                    "result": result,
                    "message": message,
                    "text": text,
                    "system_out": case.system_out,
                }
            )
        out_suites.append(
            {
                "name": suite.name,
                "tests": suite.tests,
                "failures": suite.failures,
                "errors": suite.errors,
                "skipped": suite.skipped,
                "time": suite.time,
                "properties": {p.name: p.value for p in suite.properties()},
                "cases": cases,
            }
        )
    print(
        json.dumps(
            {
                "valid": error is None,
                "validation_error": error,
                "stated": {
                    "tests": xml.tests,
                    "failures": xml.failures,
                    "errors": xml.errors,
                },
                "counted": counted,
                "suites": out_suites,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
