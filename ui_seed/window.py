"""The seed window of batos: the image drawn by itself, in Kivy.

This text is the first version of Genesis's ``display_yourself``; ``batos ui``
fetches it from the image, checks it with the crucible's static stage and runs
it. It only draws: the state, the bridge calls and the errors are in
``ui_seed.models`` (the ``session`` given to ``make_app``), whose callbacks
arrive on the UI thread; the words it draws come from ``ui_seed.captions``. It
may import Kivy, ``ui_seed`` and a few harmless standard modules; names and
attributes never start with an underscore.
"""

from kivy.app import App
from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.tabbedpanel import TabbedPanel, TabbedPanelItem
from kivy.uix.textinput import TextInput

from ui_seed import captions

TITLE = "batos: the living image"
ROW = 30
RED = (0.55, 0.1, 0.1, 1)
DARK = (0.13, 0.14, 0.17, 1)
AMBER = (1, 0.75, 0.3, 1)


def paint(widget, rgba):
    """A solid background that follows the widget."""
    with widget.canvas.before:
        Color(*rgba)
        rect = Rectangle(pos=widget.pos, size=widget.size)

    def follow(instance, value):
        rect.pos = instance.pos
        rect.size = instance.size
    widget.bind(pos=follow, size=follow)
    return widget


def wrap(instance, value):
    instance.text_size = (value, None)


def grow(instance, value):
    instance.height = max(value[1] + 8, ROW)


def text(value, height=30, bold=False, color=None):
    """A left-aligned label that wraps and grows with its text."""
    label = Label(text=value, size_hint_y=None, height=height, halign="left", valign="middle",
                  bold=bold, markup=False)
    if color is not None:
        label.color = color
    label.bind(width=wrap, texture_size=grow)
    return label


def button(value, action, width=None):
    widget = Button(text=value, size_hint_y=None, height=ROW)
    if width is not None:
        widget.size_hint_x = None
        widget.width = width
    widget.bind(on_release=action)
    return widget


def field(hint, value="", multiline=False, height=36):
    return TextInput(text=value, hint_text=hint, multiline=multiline, size_hint_y=None,
                     height=height, write_tab=False)


def row(*widgets, height=36):
    box = BoxLayout(orientation="horizontal", size_hint_y=None, height=height, spacing=4)
    for widget in widgets:
        box.add_widget(widget)
    return box


def scroller(content):
    content.size_hint_y = None
    content.bind(minimum_height=content.setter("height"))
    view = ScrollView(do_scroll_x=False)
    view.add_widget(content)
    return view


def column():
    return GridLayout(cols=1, spacing=2, padding=4)


class Panel(BoxLayout):
    """A tab: a vertical box drawing one view model, redrawn (``refresh``) as it changes."""

    def __init__(self, window, model, **kwargs):
        super().__init__(orientation="vertical", spacing=4, padding=4, **kwargs)
        self.window = window
        self.model = model
        model.observe(self.refresh)


class ObjectsPanel(Panel):
    """The object browser: slots with kinds and values; references and parents open."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.browser, **kwargs)
        self.ref = field("uuid or name, e.g. genesis", "genesis")
        self.add_widget(row(self.ref, button("Open", lambda w: self.model.open(self.ref.text), 90),
                            button("Back", lambda w: self.model.back(), 90),
                            button("Reload", lambda w: self.model.reload(), 90)))
        self.heading = text("", bold=True)
        self.status = text("")
        self.add_widget(self.heading)
        self.add_widget(self.status)
        self.slots = GridLayout(cols=3, spacing=2, padding=2)
        self.add_widget(scroller(self.slots))

    def opener(self, uuid):
        def go(widget):
            self.ref.text = uuid
            self.model.open(uuid)
        return go

    def history(self, uuid, selector):
        def go(widget):
            self.window.show_history(uuid, selector)
        return go

    def refresh(self):
        view = self.model.view
        self.status.text = "loading..." if self.model.busy else captions.error_text(self.model)
        if view is None:
            return
        self.heading.text = captions.object_heading(view)
        self.slots.clear_widgets()
        for heading in ("slot", "kind", "value"):
            self.slots.add_widget(text(heading, bold=True))
        for slot in view.slots:
            self.slots.add_widget(text(slot.name))
            self.slots.add_widget(text(slot.kind))
            if slot.refs:
                box = BoxLayout(size_hint_y=None, height=ROW, spacing=2)
                for uuid, label in slot.refs:
                    box.add_widget(button("-> " + label, self.opener(uuid)))
                self.slots.add_widget(box)
            elif slot.kind == "method":
                self.slots.add_widget(button(slot.text + "   (history)",
                                             self.history(view.uuid, slot.selector)))
            else:
                self.slots.add_widget(text(slot.text))


class ConsolePanel(Panel):
    """Send a message and see the result, the error, or the mind at work and its verdict."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.console, **kwargs)
        self.receiver = field("receiver: uuid or name", "genesis")
        self.selector = field("selector, e.g. printString or setSlot:value:")
        self.args = field('arguments as a JSON list, e.g. ["colour", "red"]')
        self.add_widget(row(self.receiver, self.selector))
        self.add_widget(row(self.args, button("Send", lambda w: self.model.send(
            self.receiver.text, self.selector.text, self.args.text), 110)))
        self.status = text("")
        self.add_widget(self.status)
        self.result = TextInput(readonly=True, text="")
        self.add_widget(self.result)
        Clock.schedule_interval(self.tick, 0.25)

    def tick(self, dt):
        if self.model.busy:
            self.status.text = captions.console_progress(self.model)

    def refresh(self):
        if self.model.busy:
            return
        last = self.model.last
        self.status.text = captions.error_text(self.model)
        if last is not None:
            self.result.text = captions.console_result(last)


class HistoryPanel(Panel):
    """A method's versions with author and reason; diff two; roll back to one."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.history, **kwargs)
        self.target = field("object: uuid or name", "traits")
        self.selector = field("method selector, e.g. describe")
        self.add_widget(row(self.target, self.selector, button("Load", lambda w: self.model.load(
            self.target.text, self.selector.text), 90)))
        self.status = text("")
        self.add_widget(self.status)
        self.versions = column()
        self.add_widget(scroller(self.versions))
        self.diff = TextInput(readonly=True, text="")
        self.add_widget(self.diff)

    def show(self, target, selector):
        self.target.text, self.selector.text = target, selector
        self.model.load(target, selector)

    def differ(self, old, new):
        def go(widget):
            self.diff.text = self.model.diff(old, new) or "(the same source)"
        return go

    def roller(self, number):
        def go(widget):
            self.model.rollback(number)
        return go

    def refresh(self):
        self.status.text = "loading..." if self.model.busy else (
            captions.error_text(self.model) or self.model.message)
        self.versions.clear_widgets()
        for entry in self.model.versions:
            number = entry["version"]
            widgets = [text(captions.version_line(entry))]
            if number > 1:
                widgets.append(button("diff v" + str(number - 1), self.differ(number - 1, number),
                                      110))
            if number != self.model.versions[-1]["version"]:
                widgets.append(button("roll back to", self.roller(number), 120))
            self.versions.add_widget(row(*widgets))
        if self.model.versions and not self.diff.text:
            self.diff.text = self.model.versions[-1]["source"]


class IncarnationsPanel(Panel):
    """The live incarnation and any candidate, updated from the event stream."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.incarnations, **kwargs)
        self.summary = text("")
        self.add_widget(row(self.summary, button("Refresh", lambda w: self.model.refresh(), 100)))
        self.table = GridLayout(cols=8, spacing=2, padding=2)
        self.add_widget(scroller(self.table))
        self.quarantine = text("")
        self.add_widget(self.quarantine)
        self.events = text("")
        self.add_widget(self.events)
        Clock.schedule_interval(self.tick, 1.0)

    def tick(self, dt):
        if self.model.status is not None:
            self.refresh()

    def refresh(self):
        status = self.model.status
        if status is None:
            self.summary.text = captions.error_text(self.model) or "loading..."
            return
        self.summary.text = captions.supervisor_summary(status)
        self.table.clear_widgets()
        for heading in captions.INCARNATION_COLUMNS:
            self.table.add_widget(text(heading, bold=True))
        for inc in self.model.rows:
            for value in captions.incarnation_cells(inc):
                self.table.add_widget(text(value))
        self.quarantine.text = captions.quarantine_text(self.model.quarantine_lines)
        self.events.text = captions.events_text(self.model.events)


class EvolvePanel(Panel):
    """Add or remove packages by a validated handover; its phases appear as they happen."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.evolve, **kwargs)
        self.add = field("add: requirements, e.g. six==1.16.0")
        self.remove = field("remove: package names")
        self.add_widget(row(self.add, self.remove))
        self.add_widget(row(button("Evolve", lambda w: self.model.start(self.add.text,
                                                                        self.remove.text)),
                            button("Roll back env", lambda w: self.model.rollback())))
        self.status = text("")
        self.add_widget(self.status)
        self.phases = column()
        self.add_widget(scroller(self.phases))

    def refresh(self):
        self.status.text = captions.evolve_status(self.model)
        self.phases.clear_widgets()
        for phase in self.model.phases:
            self.phases.add_widget(text(captions.phase_line(phase)))


class AuditPanel(Panel):
    """The handover log, per-phase durations and the hash chain's verification."""

    def __init__(self, window, **kwargs):
        super().__init__(window, window.session.audit, **kwargs)
        self.verify = text("")
        self.add_widget(row(self.verify, button("Refresh", lambda w: self.model.refresh(), 100)))
        self.rows = column()
        self.add_widget(scroller(self.rows))

    def refresh(self):
        check = self.model.verify
        self.verify.text = captions.chain_text(check) if check is not None else (
            captions.error_text(self.model) or "loading...")
        self.rows.clear_widgets()
        if not self.model.rows:
            self.rows.add_widget(text("no handovers yet"))
        for entry in reversed(self.model.rows):
            summary, detail = captions.handover_lines(entry)
            self.rows.add_widget(text(summary, bold=True))
            self.rows.add_widget(text(detail))


class SeedWindow(BoxLayout):
    """The title, the connection, a fallback banner, the errors, and the six panels."""

    def __init__(self, session, **kwargs):
        super().__init__(orientation="vertical", **kwargs)
        self.session = session
        paint(self, DARK)
        self.title = text(TITLE, height=40, bold=True)
        self.connection = text("")
        self.add_widget(row(self.title, self.connection, height=40))
        if session.banner:
            self.add_widget(paint(text("FALLBACK: " + session.banner, height=44), RED))
        self.problem = text("", color=AMBER)
        self.add_widget(self.problem)
        self.tabs = TabbedPanel(do_default_tab=False, tab_width=130)
        self.history = HistoryPanel(self)
        self.history_tab = None
        for name, panel in (("Objects", ObjectsPanel(self)), ("Console", ConsolePanel(self)),
                            ("History", self.history), ("Incarnations", IncarnationsPanel(self)),
                            ("Evolve", EvolvePanel(self)), ("Audit", AuditPanel(self))):
            tab = TabbedPanelItem(text=name)
            tab.add_widget(panel)
            self.tabs.add_widget(tab)
            if panel is self.history:
                self.history_tab = tab
        self.add_widget(self.tabs)
        Clock.schedule_once(self.first_tab, 0)
        session.observe(self.refresh)
        self.refresh()

    def first_tab(self, dt):
        self.tabs.switch_to(self.tabs.tab_list[-1])

    def show_history(self, target, selector):
        self.history.show(target, selector)
        self.tabs.switch_to(self.history_tab)

    def refresh(self):
        self.connection.text = captions.connection_text(self.session)
        self.problem.text = captions.error_text(self.session)


class SeedApp(App):
    def __init__(self, session, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.title = TITLE

    def build(self):
        return SeedWindow(self.session)


def make_app(session):
    """The application for a connected ``ui_seed.models.Session``."""
    return SeedApp(session)

