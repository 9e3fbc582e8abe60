"""How replies read: the reload and /stats reports (escaped, within Telegram's limit), in each language."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bot import i18n
from bot.answer import Answer
from bot.knowledge import Changes, KnowledgeBase, Problem
from bot.render import reload_report, render_html, render_text, smalltalk_reply, stats_report
from bot.search import Hit
from bot.store import Stats
from tests.conftest import make_article

EN = i18n.translator("en")


def _visible_length(html_text: str) -> int:
    return len(html_text.encode("utf-16-le")) // 2


def test_the_reload_report_names_files_and_lines_and_fits(tmp_path: Path) -> None:
    kb = KnowledgeBase()
    problems = tuple(Problem(tmp_path / "articles" / f"a{n}.yaml", n, "bad YAML: <oops> & more") for n in range(500))
    text = reload_report(kb, kb, Changes(), problems, tmp_path, EN)
    assert "<code>articles/a3.yaml:3</code>" in text
    assert "&lt;oops&gt; &amp; more" in text
    assert _visible_length(text) <= 4096
    assert text.rstrip().endswith("more")


def test_the_reload_report_lists_what_changed() -> None:
    old = KnowledgeBase({"gone": make_article("gone", "Old <news>", "Body.")})
    new = KnowledgeBase({"new": make_article("new", "Fresh & new", "Body.")})
    text = reload_report(old, new, Changes(added=("new",), removed=("gone",)), (), Path("."), EN)
    assert "added: Fresh &amp; new" in text and "removed: Old &lt;news&gt;" in text
    assert "1 added, 0 updated, 1 removed" in text


def test_stats_escape_what_readers_typed() -> None:
    stats = Stats(2, 3, 10, 4, 1, 2, [("<script>alert(1)</script>", 3)], [("why & how", 2)])
    text = stats_report(stats, 5, EN)
    assert "Articles: 5" in text and "14 (10 answered, 4 not answered)" in text
    assert "&lt;script&gt;" in text and "<script>" not in text and "why &amp; how" in text


def test_an_answer_to_a_question_in_another_language_says_so_first_and_still_answers() -> None:
    article = make_article("forum", "Civil Forum recommendations", "Kaletayev presented the recommendations.")
    answer = Answer("Что сказал Kaletayev?", True, True, 0.9, article, ("Kaletayev presented the recommendations.",),
                    None, (), foreign_language="ru", kb_languages=("en", "kk"))
    for language, names in (("ru", "английский, казахский"), ("kk", "ағылшын тілі, қазақ тілі")):
        tr = i18n.translator(language)
        text = render_html(answer, tr)
        assert text.startswith(tr("answer.other_languages", question=tr.language_name("ru"), languages=names))
        assert "Civil Forum recommendations" in text and "Kaletayev presented" in text
    assert render_text(Answer("q", False, False, 0.1, None, (), None, ())).startswith(EN("answer.dont_know"))


def test_unsure_guesses_never_show_the_same_sentence_twice() -> None:
    shared = "The council met on Monday and approved the plan."
    first = make_article("first", "First article", f"{shared} It costs a lot.")
    second = make_article("second", "Second article", f"{shared} Nobody objected.")
    third = make_article("third", "Third article", "Volunteers planted trees in the park.")
    answer = Answer("what did the council approve?", True, False, 0.6, first, (shared,), None,
                    (Hit(second, 0.5), Hit(third, 0.4)), guess_sentences=(shared, third.body))
    text = render_text(answer)
    assert text.count(shared) == 1
    assert text.index("1. First article") < text.index(shared) < text.index("2. Second article")
    assert text.index("3. Third article") < text.index(third.body)


def test_small_talk_says_what_the_bot_knows_and_offers_an_article_in_the_readers_language() -> None:
    english = make_article("en-news", "Council approves the plan", "Body.", published=dt.date(2024, 5, 2))
    russian = make_article("ru-news", "Совет одобрил план", "Тело.", language="ru", published=dt.date(2024, 5, 1))
    ru = i18n.translator("ru")
    text = smalltalk_reply("greeting", ru, 2, ("en", "ru"), (english, russian))
    assert text.splitlines() == [
        ru("smalltalk.greeting"),
        ru("smalltalk.knows", articles="2 статьи", languages="английский, русский"),
        ru("smalltalk.example", title="Совет одобрил план"),
        ru("answer.latest_hint"),
    ]
    assert smalltalk_reply("who", EN, 0, (), ()).splitlines() == [EN("smalltalk.who"), EN("answer.latest_hint")]
    hostile = make_article("x", "<script> & " * 40, "Body.")
    assert "&lt;script&gt;" in smalltalk_reply("help", EN, 1, ("en",), (hostile,))
