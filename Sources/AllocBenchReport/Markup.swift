/// A tree of elements that renders as SVG, or as an HTML page in which every element is closed, so
/// the same output is valid HTML and well-formed XML. Text and attribute values are escaped when
/// rendered, so a trace or allocator named `<&>` cannot break the markup.
public struct Element: Sendable {
    public enum Node: Sendable {
        case element(Element)
        case text(String)
        /// Verbatim content of a raw-text element (`<style>`): HTML does not decode entities there,
        /// so it is not escaped, and it may not contain `<` or `&` (checked when rendering).
        case raw(String)
    }

    public var name: String
    public var attributes: [(name: String, value: String)]
    public var children: [Node]

    public init(_ name: String, _ attributes: KeyValuePairs<String, String> = [:], _ children: [Node] = []) {
        self.name = name
        self.attributes = attributes.map { (name: $0.key, value: $0.value) }
        self.children = children
    }

    public init(_ name: String, _ attributes: KeyValuePairs<String, String> = [:], text: String) {
        self.init(name, attributes, [.text(text)])
    }

    public mutating func append(_ element: Element) { children.append(.element(element)) }
    public mutating func append(contentsOf elements: [Element]) { children += elements.map(Node.element) }
    public mutating func append(text: String) { children.append(.text(text)) }

    public mutating func setAttribute(_ name: String, _ value: String) {
        if let index = attributes.firstIndex(where: { $0.name == name }) {
            attributes[index].value = value
        } else {
            attributes.append((name: name, value: value))
        }
    }

    public func attribute(_ name: String) -> String? { attributes.first { $0.name == name }?.value }

    /// The markup of this element and its children.
    public func rendered() -> String {
        var output = ""
        render(into: &output, inSVG: false)
        return output
    }

    /// HTML elements that never have content: written `<meta/>` so XML parsers accept them too.
    static let voidElements: Set<String> = ["meta", "br", "hr", "img", "col", "wbr"]
    /// Containers whose whitespace does not matter: a line break before each child keeps the
    /// output readable without changing what is drawn.
    static let blockElements: Set<String> = [
        "html", "head", "body", "section", "header", "nav", "figure", "div", "table", "thead", "tbody",
        "tr", "ul", "svg", "g",
    ]

    private func render(into output: inout String, inSVG parentIsSVG: Bool) {
        let inSVG = parentIsSVG || name == "svg"
        output += "<" + name
        for attribute in attributes {
            output += " " + attribute.name + "=\"" + Markup.escape(attribute.value) + "\""
        }
        if children.isEmpty && (inSVG || Element.voidElements.contains(name)) {
            output += "/>"
            return
        }
        output += ">"
        let breaksLines = Element.blockElements.contains(name)
        for child in children {
            switch child {
            case .element(let element):
                if breaksLines { output += "\n" }
                element.render(into: &output, inSVG: inSVG)
            case .text(let text):
                output += Markup.escape(text)
            case .raw(let text):
                precondition(!text.contains("<") && !text.contains("&"), "raw text may not contain < or &")
                output += text
            }
        }
        if breaksLines { output += "\n" }
        output += "</" + name + ">"
    }
}

public enum Markup {
    /// Escapes the five characters that are special in XML and HTML text and attribute values.
    public static func escape(_ text: String) -> String {
        guard text.contains(where: { "&<>\"'".contains($0) }) else { return text }
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count + 16)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
