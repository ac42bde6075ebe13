"""Session set-up shared by the test modules."""


def pytest_collection_finish(session):
    """When the run includes the portable tests in the MicroPython VM, start that VM run now, on a
    core of its own, instead of when its module comes: CPython runs the rest meanwhile."""
    if any(item.nodeid.startswith("tests/test_micropython_vm.py::test_fw_module_under_micropython")
           for item in session.items):
        from tests import test_micropython_vm

        test_micropython_vm.start_fw_tests_early()
