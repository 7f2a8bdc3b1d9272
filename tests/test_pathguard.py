"""Path arguments of MCP tools stay inside the artifacts directory, whatever they spell."""

from __future__ import annotations

import pytest

from tools.mcp.pathguard import PathOutsideArtifactsError, confine


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "artifacts"
    (root / "cycle_1").mkdir(parents=True)
    (root / "cycle_1" / "decision_log.md").write_text("log")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def test_a_relative_path_inside_the_root_resolves_to_its_file(root):
    assert confine("cycle_1/decision_log.md", root=root) == root / "cycle_1" / "decision_log.md"
    assert confine("cycle_1/../cycle_1/decision_log.md", root=root) == root / "cycle_1" / "decision_log.md"
    assert confine(".", root=root) == root


def test_dot_dot_segments_cannot_climb_out(root):
    with pytest.raises(PathOutsideArtifactsError, match="points outside the artifacts directory"):
        confine("cycle_1/../../../etc/passwd")
    with pytest.raises(PathOutsideArtifactsError, match="points outside the artifacts directory"):
        confine("cycle_1/../../secret.txt", root=root)
    with pytest.raises(PathOutsideArtifactsError, match="outside"):
        confine("..", root=root)


@pytest.mark.parametrize("path", ["/etc/passwd", "~/secret.txt", "~root"])
def test_absolute_and_home_paths_are_refused(root, path):
    with pytest.raises(PathOutsideArtifactsError, match="must be relative to the artifacts directory"):
        confine(path, root=root)


def test_an_absolute_path_is_refused_even_when_it_points_inside(root):
    with pytest.raises(PathOutsideArtifactsError, match="must be relative"):
        confine(str(root / "cycle_1" / "decision_log.md"), root=root)


@pytest.mark.parametrize("path", ["", "cycle_1/\x00decision_log.md"])
def test_empty_paths_and_nul_bytes_are_refused(root, path):
    with pytest.raises(PathOutsideArtifactsError, match="^path must be a non-empty relative path$"):
        confine(path, root=root)


def test_a_symlink_out_of_the_root_is_refused(root):
    (root / "cycle_1" / "escape").symlink_to(root.parent / "secret.txt")
    (root / "elsewhere").symlink_to(root.parent, target_is_directory=True)
    with pytest.raises(PathOutsideArtifactsError, match="outside"):
        confine("cycle_1/escape", root=root)
    with pytest.raises(PathOutsideArtifactsError, match="outside"):
        confine("elsewhere/secret.txt", root=root)


def test_a_symlink_inside_the_root_resolves_to_its_target(root):
    (root / "latest").symlink_to(root / "cycle_1", target_is_directory=True)
    assert confine("latest/decision_log.md", root=root) == root / "cycle_1" / "decision_log.md"


def test_a_root_reached_through_a_symlink_still_contains_its_files(root):
    link = root.parent / "artifacts-link"
    link.symlink_to(root, target_is_directory=True)
    assert confine("cycle_1/decision_log.md", root=link) == root / "cycle_1" / "decision_log.md"


def test_the_default_root_is_the_artifacts_directory(root, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(root))
    assert confine("cycle_1/decision_log.md") == root / "cycle_1" / "decision_log.md"
    with pytest.raises(PathOutsideArtifactsError):
        confine("../secret.txt")


def test_the_error_is_a_value_error_naming_the_path(root):
    with pytest.raises(ValueError, match=r"'\.\./secret\.txt'"):
        confine("../secret.txt", root=root)
