"""End to end in a real browser: JupyterLab on localhost, driven by headless Chromium.

Opens notebook 00, runs all cells as a learner would, and checks that a query result table and a
plot are on the page, that no cell shows an error, and that JupyterLab loaded without extension
errors. A screenshot is kept in artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from labkit.servers.base import ConnectionInfo

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
NOTEBOOK = "00-welcome.ipynb"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]  # fmt: skip


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: scripts/system-packages installs it in CI")
        pytest.skip(f"{name} not installed (LABKIT_TEST_TOOLS=1 scripts/system-packages)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_failing_labextension() -> None:
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "jupyterlab" in text.lower()
    assert " X" not in re.sub(r"\x1b\[[0-9;]*m", "", text), text
    assert "incompatible" not in text


@pytest.fixture(scope="module")
def jupyterlab(shop: ConnectionInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    port, token = _free_port(), secrets.token_hex(16)
    # Render every cell (no virtual scrolling), so the test sees all prompts; no news pop-up.
    settings = root / "settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = open(root / "jupyterlab.log", "w")
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}"]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    # Own settings and workspaces: a workspace saved by another JupyterLab on this machine would reopen its tabs here.
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("JupyterLab did not start:\n" + (root / "jupyterlab.log").read_text()[-3000:])
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}", root
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_notebook_00_runs_in_a_real_browser(jupyterlab: tuple[str, Path]) -> None:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = jupyterlab
    options = webdriver.ChromeOptions()
    options.binary_location = _tool("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={root / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_tool("chromedriver")))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")))
        # Every code cell of the file must be on the page before counting prompts (rendering is incremental).
        code_cells = sum(c.cell_type == "code" for c in nbformat.read(root / "notebooks" / NOTEBOOK, as_version=4).cells)
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")) == code_cells)

        def menu(top: str, item: str) -> None:
            driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{top}']").click()
            label = f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']"
            wait.until(ec.element_to_be_clickable((By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.{label}]"))).click()

        def prompts(d: webdriver.Chrome) -> list[str]:  # textContent: also cells scrolled out of view
            return [p.get_attribute("textContent").strip() for p in d.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]

        menu("Edit", "Clear Outputs of All Cells")  # what follows can only come from this run
        WebDriverWait(driver, 30).until(lambda d: not any(re.fullmatch(r"\[\d+\]:", p) for p in prompts(d)))
        menu("Run", "Run All Cells")

        def all_ran(d: webdriver.Chrome) -> bool:
            return sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts(d)) == code_cells

        try:
            WebDriverWait(driver, 120, poll_frequency=0.5).until(all_ran)
        except TimeoutException:
            pytest.fail(f"not every cell ran: {code_cells} code cells, prompts {prompts(driver)}")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")))
        driver.save_screenshot(str(ARTIFACTS / "browser-00-welcome-top.png"))
        tables = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output table")
        images = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        errors = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        dialogs = driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
        assert tables, "no query result table on the page"
        assert any("major_version" in t.text or "row_count" in t.text for t in tables)
        plots = [img for img in images if img.get_attribute("src").startswith("data:image/png")]
        diagrams = [img for img in images if img.get_attribute("src").startswith("data:image/svg+xml")]
        assert plots, "no plot on the page"
        assert len(diagrams) == 1, "the schema diagram (Mermaid) did not render"
        driver.execute_script("arguments[0].scrollIntoView()", diagrams[0])
        driver.save_screenshot(str(ARTIFACTS / "browser-00-schema-diagram.png"))
        assert not errors, [e.text[:300] for e in errors]
        assert not dialogs, [d.text[:300] for d in dialogs]
        plots[-1].location_once_scrolled_into_view  # noqa: B018  # a plot in the final screenshot
        driver.save_screenshot(str(ARTIFACTS / "browser-00-welcome.png"))
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not [m for m in severe if "extension" in m.lower() or "plugin" in m.lower()], severe
    except Exception:
        driver.save_screenshot(str(ARTIFACTS / "browser-failure.png"))
        raise
    finally:
        driver.quit()


@contextlib.contextmanager
def _jupyterlab_on(folder: Path, home: Path) -> Iterator[str]:
    """JupyterLab serving ``folder`` on a free localhost port, as ``labkit lab`` starts it; yields its base URL with the token."""
    port, token = _free_port(), secrets.token_hex(16)
    settings = home / "settings"
    for extension, text in [("notebook-extension/tracker", '{"windowingMode": "none"}'),  # every cell rendered
                            ("apputils-extension/notification", '{"fetchNews": "false"}')]:  # fmt: skip
        path = settings / "@jupyterlab" / f"{extension}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}"]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    with open(home / "jupyterlab.log", "w") as log:
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(home / "layouts"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime")}  # fmt: skip
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1)
                    break
                except OSError:
                    time.sleep(0.25)
            else:
                pytest.fail("JupyterLab did not start:\n" + (home / "jupyterlab.log").read_text()[-3000:])
            yield f"http://127.0.0.1:{port}/lab/tree/{{}}?token={token}"
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_a_student_works_an_exercise_in_the_workspace(shop: ConnectionInfo, tmp_path: Path) -> None:
    """The student journey: notebook 03 from the student workspace, a wrong answer and its feedback, a hint, then success."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from labkit.notebook import workspace

    folder = tmp_path / "workspace"
    workspace.update(folder)  # what `make lab` opens
    notebook = "03-window-functions.ipynb"
    cells = nbformat.read(folder / notebook, as_version=4).cells
    stub = next(i for i, c in enumerate(cells) if c.source.startswith("answer_03_1 ="))
    assert "ROW_NUMBER" not in cells[stub].source and cells[stub + 1].source.startswith('shop.check("03.1"')
    setup = next(i for i, c in enumerate(cells) if "labkit.lab()" in c.source)
    cells_on_show = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
    query = "SELECT o.order_number, {} AS n FROM orders o JOIN users u ON u.id = o.user_id WHERE u.username = 'aisha.hall4018' ORDER BY n"
    with _jupyterlab_on(folder, tmp_path) as url:
        options = webdriver.ChromeOptions()
        options.binary_location = _tool("chromium")
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(_tool("chromedriver")))
        ARTIFACTS.mkdir(exist_ok=True)
        wait = WebDriverWait(driver, 120, poll_frequency=0.5)
        idle = (By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")

        def cell(index: int) -> Any:
            return driver.find_elements(By.CSS_SELECTOR, cells_on_show)[index]

        def output(index: int) -> str:
            shown = cell(index).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
            return "\n".join(str(element.get_attribute("textContent")) for element in shown)

        def type_and_run(index: int, text: str, *, runs: int = 1) -> None:
            """Type ``text`` into cell ``index`` as a student would, then Shift+Enter ``runs`` times (the cell, then the next)."""
            editor = cell(index).find_element(By.CSS_SELECTOR, ".cm-content")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", editor)
            editor.click()
            editor.send_keys(Keys.CONTROL, "a")
            editor.send_keys(text)
            for _ in range(runs):
                shift_enter()

        def shift_enter() -> None:
            webdriver.ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
            wait.until(ec.presence_of_element_located(idle))

        try:
            driver.get(url.format(notebook))
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, cells_on_show)) == len(cells))
            wait.until(ec.presence_of_element_located(idle))
            cell(setup).find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()  # the notebook's set-up cell, as it is
            shift_enter()  # the kernel runs requests in order: the cells below find `shop`

            type_and_run(stub, f'answer_03_1 = "{query.format(1)}"', runs=2)  # every order numbered 1: wrong
            wait.until(lambda d: "not yet" in output(stub + 1))
            feedback = output(stub + 1)
            assert "✗ Exercise 03.1: not yet." in feedback and "Traceback" not in feedback, feedback
            driver.save_screenshot(str(ARTIFACTS / "browser-student-wrong-answer.png"))

            webdriver.ActionChains(driver).send_keys(Keys.ESCAPE).perform()
            cell(stub + 1).find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()  # select the check cell (command mode)
            webdriver.ActionChains(driver).send_keys("b").perform()  # a new cell below it, as a student adds one
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, cells_on_show)) == len(cells) + 1)
            type_and_run(stub + 2, 'shop.hint("03.1")')
            wait.until(lambda d: "Hint 1 of" in output(stub + 2))
            hint = output(stub + 2).strip()
            assert hint.startswith("Hint 1 of 3 for 03.1 (the concept):") and "ROW_NUMBER" not in hint, hint  # text, not a quoted string
            driver.save_screenshot(str(ARTIFACTS / "browser-student-hint.png"))

            type_and_run(stub, f'answer_03_1 = "{query.format("ROW_NUMBER() OVER (ORDER BY o.created_at)")}"', runs=2)
            wait.until(lambda d: "correct" in output(stub + 1))
            assert "✓ Exercise 03.1: correct." in output(stub + 1) and "not yet" not in output(stub + 1)
            driver.save_screenshot(str(ARTIFACTS / "browser-student-success.png"))
        except Exception:
            driver.save_screenshot(str(ARTIFACTS / "browser-student-failure.png"))
            raise
        finally:
            driver.quit()


# ---- what a learner sees when SQL fails, and when another notebook resets the shop ----------------

ERROR_NOTEBOOK = "browser-sql-error.ipynb"
FIRST_NOTEBOOK, SECOND_NOTEBOOK = "browser-first.ipynb", "browser-second.ipynb"
FAILING_SQL = "%%sql\nSELECT id\nFROM orders\nWHERE no_such_column = 1"


def _write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@contextlib.contextmanager
def _chromium(root: Path, name: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _tool("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={root / ('chromium-' + name)}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(_tool("chromedriver")))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    except Exception:
        driver.save_screenshot(str(ARTIFACTS / f"browser-{name}-failure.png"))
        raise
    finally:
        driver.quit()


def _menu(driver: Any, top: str, item: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{top}']").click()
    label = f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']"
    WebDriverWait(driver, 60).until(ec.element_to_be_clickable((By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.{label}]"))).click()


def _panel(driver: Any, name: str) -> Any:
    """The notebook panel on show, once ``name`` is the current tab (JupyterLab keeps one panel per open notebook)."""
    from selenium.webdriver.common.by import By

    labels = driver.find_elements(By.CSS_SELECTOR, ".lm-DockPanel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    if name not in [label.get_attribute("textContent").strip() for label in labels]:
        return None
    shown = [panel for panel in driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel") if panel.is_displayed()]
    return shown[0] if len(shown) == 1 else None


def _open_and_run_all(driver: Any, url: str | None, name: str, cells: int) -> Any:
    """Open ``name`` (by URL, or from the file browser when a notebook is already open), run all its cells; return its panel."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 120)
    if url is not None:
        driver.get(url)
    else:
        item = wait.until(ec.element_to_be_clickable((By.XPATH, f"//li[contains(@class,'jp-DirListing-item')][.//span[text()='{name}']]")))
        ActionChains(driver).double_click(item).perform()
    panel = wait.until(lambda d: _panel(d, name))
    wait.until(lambda d: len(panel.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")) == cells)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"))
    _menu(driver, "Run", "Run All Cells")
    return panel


def _prompts_of(panel: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [p.get_attribute("textContent").strip() for p in panel.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]


def test_a_failing_sql_cell_is_short_and_shows_the_caret_in_a_real_browser(jupyterlab: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = jupyterlab
    setup = "import labkit\nshop = labkit.lab()"
    _write_notebook(root / "notebooks" / ERROR_NOTEBOOK, setup, FAILING_SQL, "%sql SELECT 1 AS after_the_error")
    with _chromium(root, "sql-error") as driver:
        panel = _open_and_run_all(driver, url.replace(NOTEBOOK, ERROR_NOTEBOOK), ERROR_NOTEBOOK, 3)
        WebDriverWait(driver, 120).until(lambda d: re.fullmatch(r"\[\d+\]:", _prompts_of(panel)[1]))
        cell = panel.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")[1]
        outputs = cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
        driver.execute_script("arguments[0].scrollIntoView()", cell)
        driver.save_screenshot(str(ARTIFACTS / "browser-sql-error.png"))
        assert len(outputs) == 1, [o.text for o in outputs]
        text = outputs[0].get_attribute("textContent")
        lines = text.strip("\n").splitlines()
        assert lines[:3] == ['ERROR:  column "no_such_column" does not exist', "LINE 3: WHERE no_such_column = 1", " " * 14 + "^"], lines
        assert len(lines) <= 15 and "Traceback" not in text and "snippets" not in text
        assert outputs[0].size["height"] < 200, f"the error takes {outputs[0].size['height']} px"
        assert not cell.find_elements(By.CSS_SELECTOR, "mjx-container, .MathJax"), "no maths typesetting in an error"
        assert panel.find_elements(By.CSS_SELECTOR, ".jp-InputPrompt")[2].get_attribute("textContent").strip() == "[ ]:", (
            "Run All stops at the failing cell, as for any error"
        )


def test_a_reset_in_a_second_notebook_does_not_break_the_first(jupyterlab: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = jupyterlab
    marker = root / "second-notebook-reset-done"
    marker.unlink(missing_ok=True)
    setup = "import labkit\nshop = labkit.lab()"
    wait_for_marker = f"import pathlib, time\nwhile not pathlib.Path({str(marker)!r}).exists():\n    time.sleep(0.2)"
    _write_notebook(root / "notebooks" / FIRST_NOTEBOOK, setup, "%sql SELECT count(*) AS before_reset FROM categories",
                    wait_for_marker, "%sql SELECT count(*) AS after_reset FROM categories")  # fmt: skip
    _write_notebook(root / "notebooks" / SECOND_NOTEBOOK, setup, "shop.reset()", f"import pathlib\npathlib.Path({str(marker)!r}).touch()")
    with _chromium(root, "two-notebooks") as driver:
        first = _open_and_run_all(driver, url.replace(NOTEBOOK, FIRST_NOTEBOOK), FIRST_NOTEBOOK, 4)
        WebDriverWait(driver, 120).until(lambda d: re.fullmatch(r"\[\d+\]:", _prompts_of(first)[1]))
        second = _open_and_run_all(driver, None, SECOND_NOTEBOOK, 3)
        WebDriverWait(driver, 120).until(lambda d: all(re.fullmatch(r"\[\d+\]:", p) for p in _prompts_of(second)))
        reset_output = second.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")[1].text
        assert "The shop database is pristine again" in reset_output, reset_output
        driver.find_element(By.XPATH, f"//li[contains(@class,'lm-TabBar-tab')][.//div[contains(text(),'{FIRST_NOTEBOOK}')]]").click()
        WebDriverWait(driver, 120).until(lambda d: all(re.fullmatch(r"\[\d+\]:", p) for p in _prompts_of(first)))
        last = first.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")[3]
        driver.execute_script("arguments[0].scrollIntoView()", last)
        driver.save_screenshot(str(ARTIFACTS / "browser-two-notebooks.png"))
        errors = last.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")
        assert "after_reset" in last.text and not errors, last.text
        for word in ("AdminShutdown", "terminating connection", "Rollback"):
            assert word not in last.text
