"""File formats an operator's bulk load reads: image folders and ISO/IEC 19794-2 templates.

:func:`~node.formats.discover.discover` walks a path and returns one
:class:`~node.formats.discover.SourceFile` per loadable file, with the subject it belongs to
(from the folder layout) and whether it holds an image or finger minutiae templates;
:func:`~node.formats.iso.read_templates` decodes the latter.
"""
